package capture

import (
	"golang.org/x/net/bpf"
)

// The kernel steers each datagram to one socket of a SO_REUSEPORT group
// with a classic BPF program (SO_ATTACH_REUSEPORT_CBPF) that sees the UDP
// payload: the VXLAN header, then the mirrored Ethernet frame. It returns
// a hash of the inner connection that is the same in both directions, so
// both halves of a connection reach the same socket, and so the same
// engine, whatever outer UDP ports the mirror chose. The kernel spreads
// the work and the reads over the sockets: no reader hands datagrams to
// another goroutine, which is what lets shards scale on few cores.
//
// A datagram the program cannot read (too short, not IPv4 or IPv6, an
// inner frame with more than one VLAN tag) goes to socket 0, which decodes and counts it
// as a single listener would. An index beyond the sockets bound makes the
// kernel fall back to its own hash: that happens only while the group is
// being bound, and ListenGroup drops what arrived meanwhile.

// Offsets in the UDP payload: the VXLAN header, then the inner frame's
// MAC addresses and its EtherType, or an 802.1Q tag and the EtherType.
const (
	steerEtherType = 8 + 12
	steerTagged    = steerEtherType + 4
	steerIP        = steerEtherType + 2
)

// steerProgram returns the steering program for a group of n sockets.
func steerProgram(n int) []bpf.Instruction {
	const (
		vlan   = 0x8100
		golden = 0x9e3779b1 // spreads the sum over the high bits
	)
	var a steerAsm
	a.add(bpf.LoadAbsolute{Off: steerEtherType, Size: 2})
	a.jumpUnless(vlan, "untagged")
	// One 802.1Q tag (a second one goes to socket 0).
	a.add(bpf.LoadAbsolute{Off: steerTagged, Size: 2})
	a.steerIP(steerTagged+2, "tagged")
	a.label("untagged")
	a.steerIP(steerIP, "plain")
	// A holds the second port: add the first.
	a.label("ports")
	a.add(bpf.LoadScratch{Dst: bpf.RegX, N: steerPort}, bpf.ALUOpX{Op: bpf.ALUOpAdd})
	a.jump("mix")
	a.label("no ports")
	a.add(bpf.LoadConstant{Dst: bpf.RegA, Val: 0})
	// The ports' sum above the addresses' low bits, mixed, modulo n.
	a.label("mix")
	a.add(bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 16},
		bpf.LoadScratch{Dst: bpf.RegX, N: steerAddrSum}, bpf.ALUOpX{Op: bpf.ALUOpXor},
		bpf.ALUOpConstant{Op: bpf.ALUOpMul, Val: golden}, bpf.TAX{},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 16}, bpf.ALUOpX{Op: bpf.ALUOpXor},
		bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: uint32(n)}, bpf.RetA{})
	a.label("socket 0")
	a.add(bpf.RetConstant{Val: 0})
	return a.resolve()
}

// Scratch slots of the steering program.
const (
	steerAddrSum = 0
	steerPort    = 1
)

// steerIP writes, for the EtherType in A and an IP header at offset ip,
// the sum of the addresses into scratch and the ports into scratch and A
// (then jumps to "ports"), or jumps to "no ports" or "socket 0". name
// tells its labels apart.
func (a *steerAsm) steerIP(ip uint32, name string) {
	const (
		ipv4 = 0x0800
		ipv6 = 0x86dd
		tcp  = 6
	)
	a.jumpUnless(ipv4, name+" v6")
	// IPv4: the sum of both addresses, then the ports if TCP.
	a.add(bpf.LoadAbsolute{Off: ip + 12, Size: 4}, bpf.TAX{},
		bpf.LoadAbsolute{Off: ip + 16, Size: 4}, bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.StoreScratch{Src: bpf.RegA, N: steerAddrSum},
		bpf.LoadAbsolute{Off: ip + 9, Size: 1})
	a.jumpUnless(tcp, "no ports")
	a.add(bpf.LoadMemShift{Off: ip}, // X = the header's length
		bpf.LoadIndirect{Off: ip, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: steerPort},
		bpf.LoadIndirect{Off: ip + 2, Size: 2})
	a.jump("ports")
	// IPv6: the sum of the eight address words, then the ports if TCP
	// follows the fixed header.
	a.label(name + " v6")
	a.jumpUnless(ipv6, "socket 0")
	a.add(bpf.LoadAbsolute{Off: ip + 8, Size: 4})
	for off := uint32(12); off < 40; off += 4 {
		a.add(bpf.TAX{}, bpf.LoadAbsolute{Off: ip + off, Size: 4}, bpf.ALUOpX{Op: bpf.ALUOpAdd})
	}
	a.add(bpf.StoreScratch{Src: bpf.RegA, N: steerAddrSum}, bpf.LoadAbsolute{Off: ip + 6, Size: 1})
	a.jumpUnless(tcp, "no ports")
	a.add(bpf.LoadAbsolute{Off: ip + 40, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: steerPort},
		bpf.LoadAbsolute{Off: ip + 42, Size: 2})
	a.jump("ports")
}

// steerAsm writes a program with forward jumps to named labels.
type steerAsm struct {
	ins    []bpf.Instruction
	labels map[string]int
	fixups []steerFixup
}

type steerFixup struct {
	at    int
	label string
}

func (a *steerAsm) add(ins ...bpf.Instruction) { a.ins = append(a.ins, ins...) }

func (a *steerAsm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

// jumpUnless falls through when A equals val, else jumps to label.
func (a *steerAsm) jumpUnless(val uint32, label string) {
	a.fixups = append(a.fixups, steerFixup{len(a.ins), label})
	a.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: val})
}

func (a *steerAsm) jump(label string) {
	a.fixups = append(a.fixups, steerFixup{len(a.ins), label})
	a.add(bpf.Jump{})
}

func (a *steerAsm) resolve() []bpf.Instruction {
	for _, f := range a.fixups {
		to, ok := a.labels[f.label]
		if !ok || to <= f.at {
			panic("capture: steering program jumps to a missing or earlier label " + f.label)
		}
		skip := to - f.at - 1
		switch j := a.ins[f.at].(type) {
		case bpf.JumpIf:
			j.SkipFalse = uint8(skip)
			a.ins[f.at] = j
		case bpf.Jump:
			j.Skip = uint32(skip)
			a.ins[f.at] = j
		}
	}
	return a.ins
}

// Steerer computes in user space the socket the kernel picks for a
// datagram in a group of n: the same program, run by x/net/bpf's virtual
// machine. Tests and benchmarks use it to split traffic as the kernel does.
func Steerer(n int) (func(payload []byte) int, error) {
	vm, err := bpf.NewVM(steerProgram(n))
	if err != nil {
		return nil, err
	}
	return func(payload []byte) int {
		i, err := vm.Run(payload)
		if err != nil {
			return 0
		}
		return i
	}, nil
}
