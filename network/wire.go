package network

import (
	"slices"

	"github.com/unroot/unroot/internal/wire"
)

// EncodeSetupWire appends an optional set-up: nil is kept as nil.
func EncodeSetupWire(e *wire.Encoder, s *Setup) {
	e.Bool(s != nil)
	if s != nil {
		s.EncodeWire(e)
	}
}

// DecodeOptionalSetupWire reads what EncodeSetupWire wrote.
func DecodeOptionalSetupWire(d *wire.Decoder) *Setup {
	if !d.Bool() {
		return nil
	}
	s := DecodeSetupWire(d)
	return &s
}

// EncodeWire appends s in the launcher-to-init encoding.
func (s Setup) EncodeWire(e *wire.Encoder) {
	e.String(s.IfName)
	e.Prefix(s.Addr)
	e.Addr(s.Gateway)
	e.Int(len(s.DNS))
	for _, a := range s.DNS {
		e.Addr(a)
	}
	e.Int(s.MTU)
	e.Prefix(s.Addr6)
	e.Addr(s.Gateway6)
	e.Bool(s.ConfiguredByDriver)
	keys := make([]string, 0, len(s.Opaque))
	for k := range s.Opaque {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.Int(len(keys))
	for _, k := range keys {
		e.String(k)
		e.String(s.Opaque[k])
	}
}

// DecodeSetupWire reads what EncodeWire wrote; problems are left in d.
func DecodeSetupWire(d *wire.Decoder) Setup {
	var s Setup
	s.IfName = d.String()
	s.Addr = d.Prefix()
	s.Gateway = d.Addr()
	// An address takes at least one byte, so a count beyond the input
	// fails in the loop without a large allocation.
	for n := d.Int(); n > 0 && d.Err() == nil; n-- {
		s.DNS = append(s.DNS, d.Addr())
	}
	s.MTU = d.Int()
	s.Addr6 = d.Prefix()
	s.Gateway6 = d.Addr()
	s.ConfiguredByDriver = d.Bool()
	for n := d.Int(); n > 0 && d.Err() == nil; n-- {
		if s.Opaque == nil {
			s.Opaque = map[string]string{}
		}
		k := d.String()
		s.Opaque[k] = d.String()
	}
	if d.Err() != nil {
		return Setup{}
	}
	return s
}
