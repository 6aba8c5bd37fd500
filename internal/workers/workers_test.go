package workers

import (
	"context"
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
	for range 5 {
		p.Go(func() { done <- struct{}{} })
		<-done
		// Time for the goroutine to get back to waiting for work: Go hands
		// work only to a goroutine that is waiting already.
		time.Sleep(50 * time.Millisecond)
	}
	if n := p.spawned.Load(); n != 1 {
		t.Errorf("%d goroutines started for 5 functions run one after another, want 1", n)
	}
	cancel()
	p.Wait()
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
