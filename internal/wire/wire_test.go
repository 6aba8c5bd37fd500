package wire

import (
	"math"
	"net/netip"
	"reflect"
	"testing"
)

type all struct {
	i, j  int
	b     bool
	s     string
	ss    []string
	a     netip.Addr
	a6    netip.Addr
	zeroA netip.Addr
	p     netip.Prefix
	zeroP netip.Prefix
	last  bool
}

func (v all) encode() []byte {
	var e Encoder
	e.Int(v.i)
	e.Int(v.j)
	e.Bool(v.b)
	e.String(v.s)
	e.Strings(v.ss)
	e.Addr(v.a)
	e.Addr(v.a6)
	e.Addr(v.zeroA)
	e.Prefix(v.p)
	e.Prefix(v.zeroP)
	e.Bool(v.last)
	return e.Bytes()
}

func decode(b []byte) (all, error) {
	d := NewDecoder(b)
	v := all{i: d.Int(), j: d.Int(), b: d.Bool(), s: d.String(), ss: d.Strings(), a: d.Addr(), a6: d.Addr(),
		zeroA: d.Addr(), p: d.Prefix(), zeroP: d.Prefix(), last: d.Bool()}
	return v, d.Finish()
}

var sample = all{
	i: -1, j: math.MaxInt64, b: true, s: "héllo\x00world", ss: []string{"", "a", "b c"},
	a: netip.MustParseAddr("10.0.2.3"), a6: netip.MustParseAddr("fd00::3"),
	p: netip.MustParsePrefix("10.0.2.100/24"), last: true,
}

func TestRoundTrip(t *testing.T) {
	for _, v := range []all{sample, {}} {
		got, err := decode(v.encode())
		if err != nil || !reflect.DeepEqual(got, v) {
			t.Errorf("round trip = %+v, %v; want %+v", got, err, v)
		}
	}
}

func TestMalformed(t *testing.T) {
	b := sample.encode()
	// Every truncation fails, none panics.
	for n := 0; n < len(b); n++ {
		if _, err := decode(b[:n]); err == nil {
			t.Errorf("decode of the first %d of %d bytes: nil error", n, len(b))
		}
	}
	tests := map[string][]byte{
		"trailing byte":      append(append([]byte{}, b...), 0),
		"huge string length": {0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge strings count": {0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"boolean 2":          {0, 0, 2},
		"bad address length": {0, 0, 0, 0, 0, 3, 1, 2, 3},
		"varint overflow":    {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, in := range tests {
		if _, err := decode(in); err == nil {
			t.Errorf("%s: nil error", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sample.encode())
	f.Add(all{}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(b)
		if err != nil {
			return
		}
		got, err := decode(v.encode())
		if err != nil || !reflect.DeepEqual(got, v) {
			t.Fatalf("round trip of %+v: %+v, %v", v, got, err)
		}
	})
}
