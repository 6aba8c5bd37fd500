package operr

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

func TestFieldsRoundTrip(t *testing.T) {
	err := fmt.Errorf("outer: %w", Errorf(Tun, "tap0", "open tap %s: %w", "tap0", syscall.EACCES))
	op, subject, errno := Fields(err)
	if op != Tun || subject != "tap0" || errno != int(syscall.EACCES) {
		t.Fatalf("Fields = %q %q %d", op, subject, errno)
	}
	back := FromPeer(err.Error(), op, subject, errno)
	if back.Error() != err.Error() {
		t.Errorf("text %q, want %q", back, err)
	}
	var e *Error
	if !errors.As(back, &e) || e.Op != Tun || e.Subject != "tap0" {
		t.Errorf("As *Error = %+v", e)
	}
	if !errors.Is(back, syscall.EACCES) {
		t.Error("errno lost")
	}
	var pe *PeerError
	if !errors.As(back, &pe) {
		t.Error("not a *PeerError")
	}
	if FromPeer("x", "", "", 0).(*PeerError).Unwrap() != nil {
		t.Error("an errno 0 unwraps to something")
	}
}

func TestAll(t *testing.T) {
	inner := Wrap(IDMap, "", syscall.EPERM)
	err := errors.Join(errors.New("a"), fmt.Errorf("b: %w", Wrap(UserNS, "", inner)))
	all := All(err)
	if len(all) != 2 || all[0].Op != UserNS || all[1].Op != IDMap {
		t.Fatalf("All = %+v", all)
	}
	if Wrap(Tun, "", nil) != nil {
		t.Error("Wrap(nil) != nil")
	}
}
