package host

import (
	"context"
	"testing"

	"github.com/unroot/unroot/network"
)

func TestDrivers(t *testing.T) {
	h, n := New(), None()
	if h.Name() != "host" || !h.SharesHostNetwork() || h.Info() != nil {
		t.Errorf("host: name %q, shares %v, info %v", h.Name(), h.SharesHostNetwork(), h.Info())
	}
	if n.Name() != "none" || n.SharesHostNetwork() || n.Info() == nil || n.Info().Driver != "none" {
		t.Errorf("none: name %q, shares %v, info %v", n.Name(), n.SharesHostNetwork(), n.Info())
	}
	s, err := n.Start(context.Background(), network.Child{})
	if err != nil || s.IfName != "" || len(s.DNS) != 0 {
		t.Errorf("none Start = %+v, %v; want an empty setup", s, err)
	}
	if h.Close() != nil || n.Close() != nil {
		t.Error("Close returned an error")
	}
}
