package wire

import "github.com/unroot/unroot/network"

// Setup appends an optional network set-up: nil is kept as nil.
func (e *Encoder) Setup(s *network.Setup) {
	e.Bool(s != nil)
	if s == nil {
		return
	}
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
}

// Setup reads what Encoder.Setup wrote; problems are left in d and give
// nil.
func (d *Decoder) Setup() *network.Setup {
	if !d.Bool() {
		return nil
	}
	var s network.Setup
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
	if d.Err() != nil {
		return nil
	}
	return &s
}
