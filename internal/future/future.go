// Package future names the overlaps of a start-up: work started in the
// background at one point and joined at another, with what it carries.
// A Future is started by Go and joined by Wait; its goroutine ends by
// itself once fn returns, so a Future that nobody waits for leaks nothing
// but its result.
package future

// Future is the result of a function running in the background.
type Future[T any] struct {
	done chan struct{}
	v    T
	err  error
}

// Go runs fn in a new goroutine.
func Go[T any](fn func() (T, error)) *Future[T] {
	f := &Future[T]{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.v, f.err = fn()
	}()
	return f
}

// Wait waits for fn to return and returns its result. Every call returns
// the same result. A nil Future returns the zero value and nil at once.
func (f *Future[T]) Wait() (T, error) {
	if f == nil {
		var zero T
		return zero, nil
	}
	<-f.done
	return f.v, f.err
}

// Done is closed once fn has returned.
func (f *Future[T]) Done() <-chan struct{} { return f.done }
