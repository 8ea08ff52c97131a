// Package stdout keeps Istio's start-up log off standard output. Istio's log package opens
// "stdout" in its init, and some Istio packages log from theirs (e.g. a warning that an
// environment variable is registered twice), which would land in the middle of what kubectl
// or `cluster istio-file` print. Go initializes packages in import-path order as soon as their
// imports are ready, and this one imports only os, so it runs before Istio's: it points
// os.Stdout at stderr until main calls Restore. Istio's logger keeps the stderr it opened.
package stdout

import "os"

var real = os.Stdout

func init() {
	os.Stdout = os.Stderr
}

// Restore gives the process its standard output back.
func Restore() {
	os.Stdout = real
}
