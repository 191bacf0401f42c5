//go:build unix

package gateway

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockStateFile takes the lock of Config.StateFile for this process: an
// exclusive flock(2) of <file>.lock, held until the file returned is
// closed (Shutdown, once the state file is written; or the process's
// exit). A gateway already holding it makes this one fail at once.
func lockStateFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("gateway: state file %q: lock: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("gateway: state file %q is in use by another gateway (%s.lock is locked): give each gateway a state file of its own", path, path)
		}
		return nil, fmt.Errorf("gateway: state file %q: lock: %w", path, err)
	}
	return f, nil
}
