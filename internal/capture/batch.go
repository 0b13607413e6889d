package capture

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchReader holds the buffers of recvmmsg batches.
//
// Written here rather than taken from x/net (ipv4.PacketConn.ReadBatch),
// which tries a read each time before it waits: after a batch shorter
// than the buffers the socket was empty, so that try is a certain EAGAIN,
// one wasted system call per wake-up. perf trace at 5,000 req/s counted
// 1.75 recvmmsg per request, 0.8 of them EAGAIN, and recvmmsg was 32% of
// the handler's CPU profile. Listener.RunBatches reads every batch within
// one RawConn.Read and waits after a short batch without trying again.
// It must be one: each RawConn.Read begins by clearing the poller's
// readiness (internal/poll's prepareRead), so a datagram that arrived
// while the last batch was handled would wait unread for the next one.
// Within one Read, its arrival's readiness is kept for the wait.
type batchReader struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrAny
	bufs  [][]byte
}

func newBatchReader(batch, size int) *batchReader {
	r := &batchReader{hdrs: make([]unix.Mmsghdr, batch), iovs: make([]unix.Iovec, batch),
		names: make([]unix.RawSockaddrAny, batch), bufs: make([][]byte, batch)}
	for i := range batch {
		r.bufs[i] = make([]byte, size)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(size)
		h := &r.hdrs[i].Hdr
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	return r
}

// recv reads what the socket holds, up to a batch, without waiting:
// unix.EAGAIN when it holds nothing.
func (r *batchReader) recv(fd uintptr) (int, syscall.Errno) {
	for i := range r.hdrs {
		r.hdrs[i].Hdr.Namelen = uint32(unsafe.Sizeof(r.names[i]))
		r.hdrs[i].Hdr.Flags, r.hdrs[i].Len = 0, 0
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

// datagram returns the i-th datagram of the last read, its sender, and
// whether the kernel cut it to the buffer.
func (r *batchReader) datagram(i int) (b []byte, src netip.Addr, truncated bool) {
	h := &r.hdrs[i]
	return r.bufs[i][:h.Len], sockaddrAddr(&r.names[i], h.Hdr.Namelen), h.Hdr.Flags&unix.MSG_TRUNC != 0
}

// sockaddrAddr is the IP address of a raw socket address (an IPv4 one
// mapped into IPv6, as a dual-stack socket reports it, unmapped).
func sockaddrAddr(sa *unix.RawSockaddrAny, n uint32) netip.Addr {
	switch sa.Addr.Family {
	case unix.AF_INET:
		if n >= uint32(unsafe.Sizeof(unix.RawSockaddrInet4{})) {
			in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
			return netip.AddrFrom4(in.Addr)
		}
	case unix.AF_INET6:
		if n >= uint32(unsafe.Sizeof(unix.RawSockaddrInet6{})) {
			in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
			return netip.AddrFrom16(in.Addr).Unmap()
		}
	}
	return netip.Addr{}
}
