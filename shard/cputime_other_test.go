//go:build !unix

package shard

import "time"

// processCPU is not measured on this platform.
func processCPU() time.Duration { return 0 }
