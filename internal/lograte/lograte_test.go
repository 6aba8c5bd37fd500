package lograte

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &Limiter{Every: 5 * time.Second, Now: func() time.Time { return now }}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	steps := []struct {
		advance time.Duration
		logs    bool
		held    string
	}{
		{0, true, ""},                 // the first goes out
		{time.Millisecond, false, ""}, // held
		{time.Second, false, ""},      // held
		{4 * time.Second, true, "2"},  // 5 s after the first: out, with the count
		{time.Second, false, ""},      // held
		{10 * time.Second, true, "1"}, // later: out
		{10 * time.Second, true, ""},  // quiet in between: no count
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		buf.Reset()
		l.Log(context.Background(), log, slog.LevelWarn, "retrying", "err", "EMFILE")
		out := buf.String()
		if got := out != ""; got != s.logs {
			t.Fatalf("step %d: logged %q, want a line: %v", i, out, s.logs)
		}
		if s.logs && (s.held == "") == strings.Contains(out, "repeated=") {
			t.Errorf("step %d: %q, want repeated=%s", i, out, s.held)
		}
		if s.held != "" && !strings.Contains(out, "repeated="+s.held) {
			t.Errorf("step %d: %q, want repeated=%s", i, out, s.held)
		}
	}
}

// A level the logger drops is not counted, so the next line says nothing
// of lines nobody would have seen.
func TestLimiterDisabledLevel(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
	var l Limiter
	for range 3 {
		l.Log(context.Background(), log, slog.LevelWarn, "x")
	}
	if buf.Len() != 0 {
		t.Errorf("logged %q below the handler's level", buf.String())
	}
	if ok, held := l.Allow(); !ok || held != 0 {
		t.Errorf("Allow = %v, %d after only dropped lines, want true, 0", ok, held)
	}
}
