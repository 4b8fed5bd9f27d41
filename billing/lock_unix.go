//go:build unix

package billing

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive lock on the journal directory (flock on its
// "lock" file), so that two meters never write one journal: two replicas
// given the same MTAI_DATA_DIR fail at start instead. The kernel releases
// it when the process dies.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("billing: journal: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("billing: the usage journal %s is in use by another meter (each replica needs its own MTAI_DATA_DIR): %w", dir, err)
	}
	return func() { f.Close() }, nil
}
