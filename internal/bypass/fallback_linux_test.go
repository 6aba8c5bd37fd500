package bypass

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/internal/lograte"
	"github.com/unroot/unroot/internal/seccomp"
)

// testSupervisor is a Supervisor, not started, whose listener is fd and
// whose log goes to the returned buffer.
func testSupervisor(t *testing.T, fd int) (*Supervisor, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	s := &Supervisor{
		cfg:    Config{Listener: seccomp.NewListener(fd)},
		log:    slog.New(slog.NewTextHandler(&buf, nil)),
		ctx:    context.Background(),
		warned: map[string]bool{},
		limits: map[string]*lograte.Limiter{},
	}
	return s, &buf
}

// TestFallbackContinuesOnValidError: when the listener cannot say whether
// the call still waits (any error but ErrGone), fallback still lets the
// call go on; returning would leave the program hanging. The listener here
// is an eventfd, on which every seccomp ioctl fails with ENOTTY: the
// warning that Continue failed proves it was tried.
func TestFallbackContinuesOnValidError(t *testing.T) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	s, buf := testSupervisor(t, fd)
	s.fallback(seccomp.Notif{ID: 1, Pid: 1}, "test", "a test call", errors.New("cause"))
	out := buf.String()
	if !strings.Contains(out, "a test call runs inside the namespace") {
		t.Errorf("no fallback warning: %q", out)
	}
	if !strings.Contains(out, "let a trapped call continue") {
		t.Errorf("the call was not let go on (no Continue tried): %q", out)
	}
}
