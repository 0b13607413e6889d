package replay

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socketIdle reports whether a pooled connection is still open and quiet:
// a non-blocking peek finds nothing to read. A server that closed its end
// (EOF), reset it, or sent bytes nobody asked for makes the connection
// unfit to carry a request that must arrive at most once.
func socketIdle(sock syscall.RawConn) bool {
	idle := false
	var b [1]byte
	err := sock.Read(func(fd uintptr) bool {
		for {
			_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			idle = err == unix.EAGAIN
			return true // never wait for readability
		}
	})
	return err == nil && idle
}
