package workers

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunsEveryFunction(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := New(ctx, time.Minute)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 1000 {
		wg.Add(1)
		p.Go(func() { n.Add(1); wg.Done() })
	}
	wg.Wait()
	if n.Load() != 1000 {
		t.Fatalf("ran %d functions, want 1000", n.Load())
	}
	cancel()
	p.Wait()
}

func TestReusesIdleGoroutines(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := New(ctx, time.Minute)
	done := make(chan struct{})
	p.Go(func() { done <- struct{}{} })
	<-done
	before := runtime.NumGoroutine()
	for range 100 {
		// The kept goroutine may not be back at its receive yet; wait for
		// it, so every call below finds it idle.
		waitIdle(t, p)
		p.Go(func() { done <- struct{}{} })
		<-done
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines grew from %d to %d: idle ones were not reused", before, after)
	}
	cancel()
	p.Wait()
}

// waitIdle waits until a pool goroutine is blocked receiving work.
func waitIdle(t *testing.T, p *Pool) {
	t.Helper()
	ran := make(chan struct{})
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case p.work <- func() { close(ran) }:
			<-ran
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no idle goroutine within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestIdleGoroutinesEnd(t *testing.T) {
	p := New(context.Background(), 10*time.Millisecond)
	for range 10 {
		p.Go(func() {})
	}
	ended := make(chan struct{})
	go func() { p.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("idle goroutines still running 5 s after a 10 ms idle timeout")
	}
}

func TestContextEndStopsIdleGoroutines(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := New(ctx, time.Hour)
	for range 10 {
		p.Go(func() {})
	}
	cancel()
	ended := make(chan struct{})
	go func() { p.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("goroutines still running 5 s after the context ended")
	}
	// Work given after the end still runs.
	ran := make(chan struct{})
	p.Go(func() { close(ran) })
	<-ran
	p.Wait()
}
