package netstack

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// query is a DNS query for name (type A) with id, RD set.
func query(id uint16, name string, extra ...byte) []byte {
	q := []byte{byte(id >> 8), byte(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range bytes.Split([]byte(name), []byte(".")) {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0, 0, 1, 0, 1)
	return append(q, extra...)
}

func TestDNSFailure(t *testing.T) {
	q := query(0xbeef, "svc.unroot.test")
	r := dnsFailure(q, rcodeServFail)
	want := append([]byte{0xbe, 0xef, 0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, 0}, q[12:]...)
	if !bytes.Equal(r, want) {
		t.Errorf("dnsFailure = % x\nwant          % x", r, want)
	}
	// An EDNS OPT record in the query is not echoed; the question is.
	opt := []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0}
	qe := query(7, "a.test", opt...)
	binary.BigEndian.PutUint16(qe[10:], 1)
	if r := dnsFailure(qe, rcodeServFail); !bytes.Equal(r[12:], qe[12:len(qe)-len(opt)]) || binary.BigEndian.Uint16(r[10:]) != 0 {
		t.Errorf("with OPT: % x", r)
	}
	for name, in := range map[string][]byte{
		"short":    {1, 2, 3},
		"response": append([]byte{0, 1, 0x81, 0x80}, q[4:]...),
	} {
		if r := dnsFailure(in, rcodeServFail); r != nil {
			t.Errorf("%s: dnsFailure = % x, want nil (dropped)", name, r)
		}
	}
	// A question it cannot walk is left out; the header still answers.
	bad := append(q[:12:12], 0x40, 1, 2)
	if r := dnsFailure(bad, rcodeServFail); len(r) != 12 || binary.BigEndian.Uint16(r[4:]) != 0 || r[3]&0x0f != rcodeServFail {
		t.Errorf("bad question: % x", r)
	}
}

func FuzzDNSFailure(f *testing.F) {
	f.Add(query(1, "example.test"))
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, q []byte) {
		r := dnsFailure(q, rcodeServFail)
		if r == nil {
			return
		}
		if len(r) < 12 || r[0] != q[0] || r[1] != q[1] || r[2]&0x80 == 0 || r[3]&0x0f != rcodeServFail {
			t.Fatalf("dnsFailure(% x) = % x", q, r)
		}
		if len(r) > 12 && !bytes.HasPrefix(q[12:], r[12:]) {
			t.Fatalf("question % x is not the query's", r[12:])
		}
	})
}
