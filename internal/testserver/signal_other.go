//go:build !unix

package testserver

import "os"

// Outside Unix there is no SIGTERM/SIGSTOP/SIGCONT: stopping kills, and
// Freeze/Thaw are unsupported (they fail the signal and do nothing).
var (
	sigTerm os.Signal = os.Kill
	sigStop os.Signal = nil
	sigCont os.Signal = nil
)
