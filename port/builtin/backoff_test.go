package builtin

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	var b backoff
	var got []time.Duration
	for range 10 {
		got = append(got, b.step())
	}
	want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("steps = %v, want %v", got, want)
		}
	}
	b.reset()
	if d := b.step(); d != 5*ms {
		t.Errorf("after reset: %v, want 5ms", d)
	}
	b.longest()
	if d := b.step(); d != time.Second {
		t.Errorf("after longest: %v, want 1s", d)
	}
}

func TestSleep(t *testing.T) {
	if !sleep(t.Context(), time.Millisecond) {
		t.Error("sleep with a live context reported false")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	t0 := time.Now()
	if sleep(ctx, time.Hour) {
		t.Error("sleep with an ended context reported true")
	}
	if time.Since(t0) > time.Second {
		t.Error("sleep did not return when its context ended")
	}
}
