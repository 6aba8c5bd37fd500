package childinit

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/unroot/unroot/network"
)

// sameSetup compares every field: a set-up that differs in any one of them
// must not be taken for the prediction stage 1 applied.
func TestSameSetupEveryField(t *testing.T) {
	base := network.Setup{IfName: "tap0", Addr: netip.MustParsePrefix("10.0.2.100/24"), Gateway: netip.MustParseAddr("10.0.2.2"),
		DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3")}, MTU: 65520}
	if !sameSetup(base, base) {
		t.Fatal("a set-up differs from itself")
	}
	changed := map[string]any{
		"IfName": "tap1", "Addr": netip.MustParsePrefix("10.0.3.100/24"), "Gateway": netip.MustParseAddr("10.0.2.1"),
		"DNS": []netip.Addr{netip.MustParseAddr("10.0.2.4")}, "MTU": 1500, "Addr6": netip.MustParsePrefix("fd00::100/64"),
		"Gateway6": netip.MustParseAddr("fd00::2"), "ConfiguredByDriver": true,
	}
	typ := reflect.TypeFor[network.Setup]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		v, ok := changed[name]
		if !ok {
			t.Errorf("network.Setup.%s is new: compare it in sameSetup and add it here", name)
			continue
		}
		b := base
		reflect.ValueOf(&b).Elem().Field(i).Set(reflect.ValueOf(v))
		if sameSetup(base, b) {
			t.Errorf("sameSetup ignores %s", name)
		}
	}
}
