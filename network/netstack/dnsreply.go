package netstack

import "encoding/binary"

// DNS response codes the forwarder answers with itself.
const (
	rcodeServFail = 2 // no upstream answered
)

// dnsFailure builds the answer to query q that carries rcode and no
// records: the query's ID, opcode, RD bit and question, so the client's
// resolver matches it and gives up on this server at once instead of
// waiting for its timeout. It returns nil for what is no query (too short,
// or a response), which is dropped.
func dnsFailure(q []byte, rcode byte) []byte {
	const header = 12
	if len(q) < header || q[2]&0x80 != 0 {
		return nil
	}
	r := make([]byte, header, 512)
	copy(r, q[:2])
	r[2] = 0x80 | q[2]&0x78 | q[2]&0x01 // QR, the opcode, RD
	r[3] = 0x80 | rcode&0x0f            // RA, rcode
	if binary.BigEndian.Uint16(q[4:]) == 1 {
		if end, ok := questionEnd(q, header); ok {
			binary.BigEndian.PutUint16(r[4:], 1)
			r = append(r, q[header:end]...)
		}
	}
	return r
}

// questionEnd returns where the question that starts at i ends: a name of
// labels (or ending in a compression pointer), then type and class.
func questionEnd(q []byte, i int) (int, bool) {
	for n := 0; n < 128; n++ {
		if i >= len(q) {
			return 0, false
		}
		l := int(q[i])
		switch {
		case l == 0:
			i++
		case l&0xc0 == 0xc0:
			i += 2
		case l&0xc0 != 0:
			return 0, false
		default:
			i += 1 + l
			continue
		}
		if i+4 > len(q) {
			return 0, false
		}
		return i + 4, true
	}
	return 0, false
}
