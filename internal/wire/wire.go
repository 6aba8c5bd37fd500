// Package wire is the compact encoding of what the launcher and its
// namespace init tell each other: the init's configuration and the
// handshake messages. Both ends are the same binary, so the format only has
// to be unambiguous, not self-describing.
//
// It replaces encoding/json there because a launch is two fresh processes:
// json analyses each type by reflection on first use, in the launcher
// before the clone and in the init before it could create the tap, both on
// the start-up's critical path (README.md's start-up section has the cost).
//
// Values are written in a fixed order: integers as varints, strings and
// byte strings with a length prefix. A Decoder never panics on malformed
// input: the first problem is kept and later reads return zero values.
package wire

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Encoder appends values to a buffer.
type Encoder struct {
	b []byte
}

// Bytes returns the encoding so far.
func (e *Encoder) Bytes() []byte { return e.b }

// Int appends a signed integer.
func (e *Encoder) Int(v int) { e.b = binary.AppendVarint(e.b, int64(v)) }

// Bool appends a boolean.
func (e *Encoder) Bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// String appends a length-prefixed string.
func (e *Encoder) String(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

// Strings appends a count and the strings. Nil and empty read back as nil.
func (e *Encoder) Strings(ss []string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(ss)))
	for _, s := range ss {
		e.String(s)
	}
}

// Addr appends an address; the zero Addr is kept as such.
func (e *Encoder) Addr(a netip.Addr) {
	b, _ := a.MarshalBinary() // never fails
	e.String(string(b))
}

// Prefix appends a prefix; the zero Prefix is kept as such.
func (e *Encoder) Prefix(p netip.Prefix) {
	b, _ := p.MarshalBinary() // never fails
	e.String(string(b))
}

// Decoder reads values in the order an Encoder wrote them.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder reads b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

var errShort = errors.New("truncated")

func (d *Decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

// Err is the first problem met, if any.
func (d *Decoder) Err() error { return d.err }

// Finish returns Err, or an error if bytes are left over.
func (d *Decoder) Finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.b))
	}
	return d.err
}

// Int reads a signed integer.
func (d *Decoder) Int() int {
	v, n := binary.Varint(d.b)
	if n <= 0 || int64(int(v)) != v {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

// Bool reads a boolean.
func (d *Decoder) Bool() bool {
	if len(d.b) == 0 {
		d.fail(errShort)
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	switch v {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail(fmt.Errorf("bad boolean %d", v))
	return false
}

// length reads a length prefix that the remaining input can hold.
func (d *Decoder) length() int {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > uint64(len(d.b)-n) {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

// String reads a length-prefixed string.
func (d *Decoder) String() string {
	n := d.length()
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// Strings reads a count and that many strings.
func (d *Decoder) Strings() []string {
	// Each string takes at least one byte, so length bounds the count.
	n := d.length()
	if d.err != nil || n == 0 {
		return nil
	}
	ss := make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		ss = append(ss, d.String())
	}
	if d.err != nil {
		return nil
	}
	return ss
}

// Addr reads an address.
func (d *Decoder) Addr() netip.Addr {
	var a netip.Addr
	d.unmarshal(&a)
	return a
}

// Prefix reads a prefix.
func (d *Decoder) Prefix() netip.Prefix {
	var p netip.Prefix
	d.unmarshal(&p)
	return p
}

// unmarshal fills u from a length-prefixed byte string.
func (d *Decoder) unmarshal(u encoding.BinaryUnmarshaler) {
	if b := d.String(); d.err == nil {
		if err := u.UnmarshalBinary([]byte(b)); err != nil {
			d.fail(err)
		}
	}
}
