package oracle

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"istio.io/istio/pkg/test"
)

// failer is the test.Failer that Istio's fake discovery server needs, for use outside
// `go test`. Fatal records the message and ends the calling goroutine (like testing.T), so
// runFailer can turn it into an error; cleanups run in reverse order, like testing.T.
type failer struct {
	mu       sync.Mutex
	err      error
	cleanups []func()
}

var _ test.Failer = (*failer)(nil)

func (f *failer) Fail()      { f.Fatal("failed") }
func (f *failer) FailNow()   { f.Fatal("failed") }
func (f *failer) Helper()    {}
func (f *failer) Log(...any) {}

func (f *failer) Logf(string, ...any) {}

func (f *failer) Fatal(args ...any) {
	f.mu.Lock()
	if f.err == nil {
		f.err = errors.New(fmt.Sprint(args...))
	}
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *failer) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }

// Skip has no meaning for a tool run: treat it as a failure rather than silently succeeding.
func (f *failer) Skip(args ...any) { f.Fatal(append([]any{"skipped: "}, args...)...) }

func (f *failer) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *failer) TempDir() string {
	dir, err := os.MkdirTemp("", "istio-xds-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// runFailer runs fn on its own goroutine (so Fatal's Goexit only ends that goroutine),
// then runs the registered cleanups and returns the first Fatal message as an error.
func runFailer(fn func(t test.Failer)) error {
	f := &failer{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Istio's test helpers panic on some failures (e.g. the fake Kubernetes API on a
		// create it refuses): report those like Fatal instead of crashing.
		defer func() {
			if r := recover(); r != nil {
				f.mu.Lock()
				if f.err == nil {
					f.err = fmt.Errorf("panic: %v", r)
				}
				f.mu.Unlock()
			}
		}()
		fn(f)
	}()
	<-done
	f.mu.Lock()
	cleanups := f.cleanups
	f.cleanups = nil
	err := f.err
	f.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	return err
}
