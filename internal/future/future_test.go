package future

import (
	"errors"
	"testing"
)

func TestWait(t *testing.T) {
	release := make(chan struct{})
	f := Go(func() (int, error) { <-release; return 7, errors.New("seven") })
	select {
	case <-f.Done():
		t.Fatal("done before fn returned")
	default:
	}
	close(release)
	for range 2 {
		if v, err := f.Wait(); v != 7 || err == nil || err.Error() != "seven" {
			t.Errorf("Wait = %d, %v; want 7, seven", v, err)
		}
	}
	var nilF *Future[string]
	if v, err := nilF.Wait(); v != "" || err != nil {
		t.Errorf("nil Wait = %q, %v; want zero", v, err)
	}
}
