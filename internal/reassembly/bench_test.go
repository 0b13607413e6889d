package reassembly

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/shadowtap/shadowtap/internal/decode"
)

type nopConsumer struct{}

func (nopConsumer) Data(Dir, []byte, int64) {}
func (nopConsumer) Gap(Dir, int)            {}
func (nopConsumer) Fin(Dir)                 {}
func (nopConsumer) End(EndReason)           {}

// nopFactory hands every flow the same consumer, so that what is measured
// is the assembler's own memory.
type nopFactory struct{}

func (nopFactory) New(Key, Dir, *decode.Packet) Consumer { return nopConsumer{} }

// synPacket returns a SYN (with one payload byte when data is set) from
// client i to one server, distinct for every i below 2^32.
func synPacket(p *decode.Packet, i int, data bool) {
	*p = decode.Packet{SrcPrt: uint16(10000 + i%50000), DstPrt: 80, Seq: uint32(i), Flags: decode.FlagSYN}
	p.Src[10], p.Src[11] = 0xff, 0xff
	binary.BigEndian.PutUint32(p.Src[12:], 0x0a000000+uint32(i/50000))
	p.Dst[10], p.Dst[11], p.Dst[12], p.Dst[15] = 0xff, 0xff, 10, 1
	if data {
		p.Payload = []byte{'x'}
	}
}

// BenchmarkTickIdle measures a timer tick while n flows are tracked and
// none of them is due: half have carried data, half are handshakes, and
// one flow in 100 holds a segment behind a hole that has not waited long
// enough. The engine ticks every 50 ms, 20 times a second: the share of a
// core is reported as core%.
func BenchmarkTickIdle(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			opts := DefaultOptions
			opts.MaxFlows = n
			var st Stats
			a := New(opts, nopFactory{}, &st)
			var p decode.Packet
			now := time.Now().UnixNano()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := range n {
				synPacket(&p, i, i%2 == 0)
				a.Assemble([16]byte{}, &p, now)
				if i%100 == 0 {
					p.Flags, p.Seq, p.Payload = decode.FlagACK, p.Seq+10, []byte("held")
					a.Assemble([16]byte{}, &p, now)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			if a.Len() != n {
				b.Fatalf("%d flows tracked, want %d", a.Len(), n)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				a.Tick(now + int64(i%100)*int64(time.Millisecond)) // always within every wait
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)*20/1e9*100, "core%")
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heapB/flow")
			if a.Len() != n || st.Gaps.Load() != 0 {
				b.Fatalf("a tick expired something: %d flows, %d gaps", a.Len(), st.Gaps.Load())
			}
		})
	}
}

// BenchmarkTickExpire measures the cost per flow that does expire: of
// 1,000,000 handshake-only flows, each tick (1 ms apart) ends the 1000
// oldest, and 1000 new ones (added with the timer stopped) keep the table
// full.
func BenchmarkTickExpire(b *testing.B) {
	const n, per = 1_000_000, 1000
	step := int64(time.Millisecond)
	opts := DefaultOptions
	opts.MaxFlows = n
	opts.HandshakeTimeout = time.Duration(n/per*step - 1) // a flow lives n/per ticks
	var st Stats
	a := New(opts, nopFactory{}, &st)
	var p decode.Packet
	next := 0
	add := func(t int64) {
		for range per {
			synPacket(&p, next, false)
			a.Assemble([16]byte{}, &p, t)
			next++
		}
	}
	for t := range int64(n / per) {
		add(t * step)
	}
	ticks := int64(0)
	for b.Loop() {
		now := (n/per + ticks) * step // ends the flows added n/per ticks ago
		a.Tick(now)
		b.StopTimer()
		add(now)
		b.StartTimer()
		ticks++
	}
	expired := st.FlowsEnded[EndIdle].Load()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(expired, 1)), "ns/expired")
	if expired != uint64(ticks)*per || a.Len() != n || st.FlowsEvicted[EvictNoData].Load() != 0 {
		b.Fatalf("%d flows expired in %d ticks, want %d; %d tracked", expired, ticks, ticks*per, a.Len())
	}
}
