// Package netlab builds the end-to-end test topology in network namespaces,
// with the kernel's own VXLAN encapsulation doing the mirroring, as AWS
// does:
//
//	client ns          production ns                         monitor ns
//	198.18.0.1 ---veth--- 198.18.0.2 (the server)
//	                      tc mirred (ingress+egress) -> vxlan
//	                      198.18.1.2 ---------veth--------- 198.18.1.1 (the handler, UDP 4789)
//
// Offloads are off on the veths so frames are wire-sized as in a VPC. All
// addresses are in the benchmarking range 198.18.0.0/15. It needs root.
package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Options size the topology.
type Options struct {
	InnerMTU int    // MTU between client and production (1500, or 9001 as on EC2)
	VNI      uint32 // VXLAN network id
}

// Lab is a built topology.
type Lab struct {
	Client, Prod, Mon string // namespace names
	ClientIP, ProdIP  netip.Addr
	MonIP             netip.Addr // where the handler listens
	VNI               uint32
}

// Available says why the lab cannot be built here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root")
	}
	for _, tool := range []string{"ip", "tc", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s", tool)
		}
	}
	return nil
}

// Setup builds the topology; Close removes it.
func Setup(opts Options) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if opts.InnerMTU == 0 {
		opts.InnerMTU = 1500
	}
	if opts.VNI == 0 {
		opts.VNI = 4242
	}
	sfx := fmt.Sprintf("%d", os.Getpid()%100000)
	l := &Lab{Client: "stc" + sfx, Prod: "stp" + sfx, Mon: "stm" + sfx,
		ClientIP: netip.MustParseAddr("198.18.0.1"), ProdIP: netip.MustParseAddr("198.18.0.2"),
		MonIP: netip.MustParseAddr("198.18.1.1"), VNI: opts.VNI}
	monMTU := opts.InnerMTU + 200 // room for the VXLAN headers: mirrored frames arrive whole
	steps := [][]string{
		{"ip", "netns", "add", l.Client},
		{"ip", "netns", "add", l.Prod},
		{"ip", "netns", "add", l.Mon},
		{"ip", "-n", l.Client, "link", "add", "c0", "type", "veth", "peer", "name", "p0", "netns", l.Prod},
		{"ip", "-n", l.Prod, "link", "add", "p1", "type", "veth", "peer", "name", "m0", "netns", l.Mon},
		{"ip", "-n", l.Client, "addr", "add", "198.18.0.1/24", "dev", "c0"},
		{"ip", "-n", l.Prod, "addr", "add", "198.18.0.2/24", "dev", "p0"},
		{"ip", "-n", l.Prod, "addr", "add", "198.18.1.2/24", "dev", "p1"},
		{"ip", "-n", l.Mon, "addr", "add", "198.18.1.1/24", "dev", "m0"},
		{"ip", "-n", l.Client, "link", "set", "c0", "mtu", fmt.Sprint(opts.InnerMTU), "up"},
		{"ip", "-n", l.Prod, "link", "set", "p0", "mtu", fmt.Sprint(opts.InnerMTU), "up"},
		{"ip", "-n", l.Prod, "link", "set", "p1", "mtu", fmt.Sprint(monMTU), "up"},
		{"ip", "-n", l.Mon, "link", "set", "m0", "mtu", fmt.Sprint(monMTU), "up"},
		{"ip", "-n", l.Client, "link", "set", "lo", "up"},
		{"ip", "-n", l.Prod, "link", "set", "lo", "up"},
		{"ip", "-n", l.Mon, "link", "set", "lo", "up"},
		{"ip", "-n", l.Prod, "link", "add", "vx0", "mtu", fmt.Sprint(opts.InnerMTU), "type", "vxlan", "id", fmt.Sprint(opts.VNI),
			"remote", "198.18.1.1", "local", "198.18.1.2", "dstport", "4789", "dev", "p1"},
		{"ip", "-n", l.Prod, "link", "set", "vx0", "up"},
		{"ip", "netns", "exec", l.Client, "ethtool", "-K", "c0", "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off"},
		{"ip", "netns", "exec", l.Prod, "ethtool", "-K", "p0", "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off"},
		{"ip", "netns", "exec", l.Prod, "ethtool", "-K", "p1", "tso", "off", "gso", "off", "gro", "off"},
		{"ip", "netns", "exec", l.Mon, "ethtool", "-K", "m0", "tso", "off", "gso", "off", "gro", "off"},
		// Mirror both directions of production's interface into the
		// VXLAN device, as a Traffic Mirror session with an inbound and
		// an outbound rule does. (matchall is not in every kernel; a u32
		// that matches everything is.)
		{"tc", "-n", l.Prod, "qdisc", "add", "dev", "p0", "clsact"},
		{"tc", "-n", l.Prod, "filter", "add", "dev", "p0", "ingress", "protocol", "all", "u32", "match", "u32", "0", "0",
			"action", "mirred", "egress", "mirror", "dev", "vx0"},
		{"tc", "-n", l.Prod, "filter", "add", "dev", "p0", "egress", "protocol", "all", "u32", "match", "u32", "0", "0",
			"action", "mirred", "egress", "mirror", "dev", "vx0"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			l.Close()
			return nil, fmt.Errorf("netlab: %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return l, nil
}

// Close removes the namespaces (and with them every device in them).
func (l *Lab) Close() {
	for _, ns := range []string{l.Client, l.Prod, l.Mon} {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

// Exec returns a command that runs in namespace ns.
func (l *Lab) Exec(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Do runs fn on a thread moved into namespace ns. Sockets fn creates
// belong to ns for their whole life, used from any goroutine afterwards.
func (l *Lab) Do(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: Go discards it when this goroutine
		// ends, rather than reuse a thread in the wrong namespace.
		return fmt.Errorf("netlab: restoring namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}
