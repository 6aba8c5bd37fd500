package seccomp

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// run interprets the subset of classic BPF that Program emits over a
// struct seccomp_data.
func run(t *testing.T, p []unix.SockFilter, data []byte) uint32 {
	t.Helper()
	var acc uint32
	for pc := 0; pc < len(p); pc++ {
		in := p[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if acc == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			if acc >= in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: unexpected code %#x", pc, in.Code)
		}
	}
	t.Fatal("ran off the end of the program")
	return 0
}

func data(arch, nr uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[offNr:], nr)
	binary.LittleEndian.PutUint32(b[offArch:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(b[offArgs+8*i:], a)
	}
	return b
}

func TestProgram(t *testing.T) {
	const (
		bind    = 49
		connect = 42
		sendto  = 44
		arch    = unix.AUDIT_ARCH_X86_64
	)
	rules := []Rule{
		{Nr: bind, LenArg: 2, Lens: []uint32{16, 28}, NonZeroArg: -1},
		{Nr: connect, LenArg: 2, Lens: []uint32{16, 28}, NonZeroArg: -1},
		{Nr: sendto, LenArg: 5, Lens: []uint32{16, 28}, NonZeroArg: 4},
		{Nr: 50, LenArg: -1, NonZeroArg: -1}, // listen: always
	}
	p := Program(Arch{Audit: arch, X32: true}, rules)
	const allow, notify = unix.SECCOMP_RET_ALLOW, unix.SECCOMP_RET_USER_NOTIF
	for _, tc := range []struct {
		name string
		d    []byte
		want uint32
	}{
		{"bind v4", data(arch, bind, 3, 0x7000, 16), notify},
		{"bind v6", data(arch, bind, 3, 0x7000, 28), notify},
		{"bind netlink", data(arch, bind, 3, 0x7000, 12), allow},
		{"bind unix", data(arch, bind, 3, 0x7000, 110), allow},
		{"bind len high bits ignored", data(arch, bind, 3, 0x7000, 1<<32|16), notify},
		{"connect v4", data(arch, connect, 3, 0x7000, 16), notify},
		{"connect unix", data(arch, connect, 3, 0x7000, 23), allow},
		{"sendto no address", data(arch, sendto, 3, 0x7000, 100, 0, 0, 0), allow},
		{"sendto no address, len set", data(arch, sendto, 3, 0x7000, 100, 0, 0, 16), allow},
		{"sendto v4", data(arch, sendto, 3, 0x7000, 100, 0, 0x8000, 16), notify},
		{"sendto high pointer", data(arch, sendto, 3, 0x7000, 100, 0, 0x7fff_0000_0000, 28), notify},
		{"sendto unix", data(arch, sendto, 3, 0x7000, 100, 0, 0x8000, 110), allow},
		{"listen", data(arch, 50, 3, 128), notify},
		{"read", data(arch, 0, 3, 0x7000, 16), allow},
		{"x32 bind", data(arch, x32Bit|bind, 3, 0x7000, 16), allow},
		{"foreign arch", data(unix.AUDIT_ARCH_I386, bind, 3, 0x7000, 16), allow},
	} {
		if got := run(t, p, tc.d); got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.name, got, tc.want)
		}
	}
	// Without x32, a number with bit 30 is just another number.
	p = Program(Arch{Audit: unix.AUDIT_ARCH_AARCH64}, rules[:1])
	if got := run(t, p, data(unix.AUDIT_ARCH_AARCH64, bind, 3, 1, 16)); got != notify {
		t.Errorf("arm64 bind: got %#x, want notify", got)
	}
	if got := run(t, p, data(unix.AUDIT_ARCH_AARCH64, connect, 3, 1, 16)); got != allow {
		t.Errorf("arm64 connect: got %#x, want allow", got)
	}
}
