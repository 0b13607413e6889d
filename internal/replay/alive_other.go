//go:build !linux

package replay

import "syscall"

// socketIdle cannot peek without blocking here; the idle timeout and the
// no-resend rule still hold.
func socketIdle(syscall.RawConn) bool { return true }
