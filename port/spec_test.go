package port

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	strict := ParseOptions{}
	lenient := ParseOptions{Lenient: true}
	tests := []struct {
		in      string
		opts    ParseOptions
		want    Spec
		wantErr string
	}{
		{in: "127.0.0.1:8080:80/tcp", want: Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: 8080, ChildPort: 80}},
		{in: "0.0.0.0:8080:10.0.2.100:80/udp", want: Spec{Proto: "udp", ParentIP: netip.MustParseAddr("0.0.0.0"), ParentPort: 8080, ChildIP: netip.MustParseAddr("10.0.2.100"), ChildPort: 80}},
		{in: "[::1]:8080:[::2]:80/udp6", want: Spec{Proto: "udp6", ParentIP: netip.MustParseAddr("::1"), ParentPort: 8080, ChildIP: netip.MustParseAddr("::2"), ChildPort: 80}},
		{in: "[::]:8080:80/tcp", want: Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("::"), ParentPort: 8080, ChildPort: 80}},
		{in: "127.0.0.1:8080:[::1]:80/tcp", want: Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: 8080, ChildIP: netip.MustParseAddr("::1"), ChildPort: 80}},
		{in: ":8080:80/tcp", want: Spec{Proto: "tcp", ParentPort: 8080, ChildPort: 80}},
		{in: "127.0.0.1:8080:80/sctp", want: Spec{Proto: "sctp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: 8080, ChildPort: 80}},
		{in: "8080:80/tcp", wantErr: "parent IP is required"},
		{in: "80/tcp", wantErr: "want PARENTIP"},
		{in: "127.0.0.1:8080:80", wantErr: "missing /PROTO"},
		{in: "127.0.0.1:8080:80/icmp", wantErr: `unknown proto "icmp"`},
		{in: "127.0.0.1:0:80/tcp", wantErr: "not a port"},
		{in: "127.0.0.1:65536:80/tcp", wantErr: "not a port"},
		{in: "127.0.0.1:8080:-1/tcp", wantErr: "not a port"},
		{in: "127.0.0.1:+80:80/tcp", wantErr: "not a port"},
		{in: "300.0.0.1:8080:80/tcp", wantErr: "invalid parentIP"},
		{in: "127.0.0.1:8080:bogus:80/tcp", wantErr: "invalid childIP"},
		{in: "127.0.0.1:8080:0.0.0.0:80/tcp", wantErr: "invalid childIP"},
		{in: "[::1:8080:80/tcp", wantErr: "missing ]"},
		{in: "[::1]x:8080:80/tcp", wantErr: "after ]"},
		{in: "1:2:3:4:5/tcp", wantErr: "too many fields"},
		{in: "::1:8080:80/tcp", wantErr: "too many fields"},
		{in: "[::1]:8080:80/tcp4", wantErr: "needs an IPv4 address"},
		{in: "127.0.0.1:8080:80/udp6", wantErr: "needs an IPv6 address"},
		{in: "8080:80/tcp", opts: lenient, want: Spec{Proto: "tcp", ParentPort: 8080, ChildPort: 80}},
		{in: "8080:80", opts: lenient, want: Spec{Proto: "tcp", ParentPort: 8080, ChildPort: 80}},
		{in: "53/udp", opts: lenient, want: Spec{Proto: "udp", ParentPort: 53, ChildPort: 53}},
		{in: "8080:10.0.2.100:80/tcp", opts: lenient, want: Spec{Proto: "tcp", ParentPort: 8080, ChildIP: netip.MustParseAddr("10.0.2.100"), ChildPort: 80}},
		{in: "127.0.0.1:8080:80/tcp", opts: lenient, want: Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: 8080, ChildPort: 80}},
		{in: "", opts: lenient, wantErr: "empty"},
		{in: "", opts: strict, wantErr: "missing /PROTO"},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in, tt.opts)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSpec(%q, %+v) error = %v, want containing %q", tt.in, tt.opts, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSpec(%q, %+v): %v", tt.in, tt.opts, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSpec(%q, %+v) = %+v, want %+v", tt.in, tt.opts, got, tt.want)
		}
	}
}

func TestParseSpecs(t *testing.T) {
	got, err := ParseSpecs("127.0.0.1:8080:80/tcp,[::1]:8443:443/tcp6", ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].ParentIP != netip.IPv6Loopback() || got[1].ChildPort != 443 {
		t.Fatalf("ParseSpecs = %+v, want two specs", got)
	}
	if _, err := ParseSpecs("127.0.0.1:8080:80/tcp,", ParseOptions{}); err == nil {
		t.Fatal("ParseSpecs with a trailing comma: got nil error")
	}
}

func TestConflict(t *testing.T) {
	st := func(id int, proto, ip string, port int) Status {
		return Status{ID: id, Spec: Spec{Proto: proto, ParentIP: addr(ip), ParentPort: port, ChildPort: 80}}
	}
	existing := []Status{
		st(1, "tcp", "0.0.0.0", 8080),
		st(2, "tcp4", "127.0.0.1", 8081),
		st(3, "udp6", "", 8082),
		st(4, "tcp6", "::1", 8083),
	}
	tests := []struct {
		proto, ip string
		port      int
		wantID    int
	}{
		{"tcp", "0.0.0.0", 8080, 1},
		{"tcp", "", 8080, 1},
		{"tcp6", "::1", 8080, 1}, // tcp on 0.0.0.0 is dual-stack
		{"tcp4", "127.0.0.1", 8080, 1},
		{"udp", "0.0.0.0", 8080, 0},
		{"tcp", "127.0.0.1", 8081, 2},
		{"tcp", "127.0.0.2", 8081, 0},
		{"tcp6", "::", 8081, 0},
		{"udp4", "", 8082, 0},
		{"udp", "", 8082, 3},
		{"udp", "::1", 8082, 3},
		{"tcp4", "", 8083, 0},
		{"tcp", "", 8083, 4},
		{"tcp6", "::2", 8083, 0},
		{"tcp", "::ffff:127.0.0.1", 8081, 2},
	}
	for _, tt := range tests {
		err := Conflict(existing, Spec{Proto: tt.proto, ParentIP: addr(tt.ip), ParentPort: tt.port, ChildPort: 1})
		if tt.wantID == 0 {
			if err != nil {
				t.Errorf("Conflict(%s %s:%d) = %v, want nil", tt.proto, tt.ip, tt.port, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "conflict with ID "+string(rune('0'+tt.wantID))) {
			t.Errorf("Conflict(%s %s:%d) = %v, want conflict with ID %d", tt.proto, tt.ip, tt.port, err, tt.wantID)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8080:80/tcp", "[::1]:8080:[::2]:80/udp6", "8080:80", ":1:2/sctp", "[", "a:b:c:d:e/f"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, lenient bool) {
		sp, err := ParseSpec(s, ParseOptions{Lenient: lenient})
		if err != nil {
			return
		}
		if err := Validate(sp); err != nil {
			t.Fatalf("ParseSpec(%q) = %+v, which Validate rejects: %v", s, sp, err)
		}
		// String is the grammar ParseSpec reads.
		if back, err := ParseSpec(sp.String(), ParseOptions{}); err != nil || back != sp {
			t.Fatalf("ParseSpec(%q.String() = %q) = %+v, %v; want %+v", s, sp.String(), back, err, sp)
		}
		// JSON round-trips.
		b, err := json.Marshal(sp)
		if err != nil {
			t.Fatal(err)
		}
		var back Spec
		if err := json.Unmarshal(b, &back); err != nil || back != sp {
			t.Fatalf("JSON %s = %+v, %v; want %+v", b, back, err, sp)
		}
		// A parsed spec conflicts with itself.
		if Conflict([]Status{{ID: 1, Spec: sp}}, sp) == nil {
			t.Fatalf("spec %+v does not conflict with itself", sp)
		}
	})
}

func addr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

func TestSpecString(t *testing.T) {
	tests := []struct {
		in                  Spec
		str, parent, target string
	}{
		{Spec{Proto: "tcp", ParentPort: 8080, ChildPort: 80}, ":8080:80/tcp", "*:8080", "127.0.0.1:80"},
		{Spec{Proto: "tcp6", ParentIP: addr("::1"), ParentPort: 8080, ChildPort: 80}, "[::1]:8080:80/tcp6", "[::1]:8080", "[::1]:80"},
		{Spec{Proto: "udp", ParentIP: addr("0.0.0.0"), ParentPort: 53, ChildIP: addr("10.0.2.100"), ChildPort: 5353}, "0.0.0.0:53:10.0.2.100:5353/udp", "0.0.0.0:53", "10.0.2.100:5353"},
		{Spec{Proto: "tcp", ParentIP: addr("::ffff:127.0.0.1"), ParentPort: 1, ChildIP: addr("::ffff:10.0.0.1"), ChildPort: 2}, "[::ffff:127.0.0.1]:1:[::ffff:10.0.0.1]:2/tcp", "[::ffff:127.0.0.1]:1", "10.0.0.1:2"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.str {
			t.Errorf("%+v.String() = %q, want %q", tt.in, got, tt.str)
		}
		if got := tt.in.ParentString(); got != tt.parent {
			t.Errorf("%+v.ParentString() = %q, want %q", tt.in, got, tt.parent)
		}
		if got := tt.in.ChildTarget().String(); got != tt.target {
			t.Errorf("%+v.ChildTarget() = %q, want %q", tt.in, got, tt.target)
		}
	}
}

// The JSON is RootlessKit's: addresses as strings, left out when empty; a
// bad address names its field.
func TestSpecJSON(t *testing.T) {
	b, err := json.Marshal(Spec{Proto: "tcp", ParentPort: 8080, ChildPort: 80})
	if err != nil || string(b) != `{"proto":"tcp","parentPort":8080,"childPort":80}` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
	b, _ = json.Marshal(Spec{Proto: "tcp", ParentIP: addr("::1"), ParentPort: 8080, ChildPort: 80, ChildIP: addr("::1")})
	if string(b) != `{"proto":"tcp","parentIP":"::1","parentPort":8080,"childPort":80,"childIP":"::1"}` {
		t.Errorf("Marshal = %s", b)
	}
	for in, want := range map[string]string{
		`{"proto":"tcp","parentIP":"1.2.3","parentPort":1,"childPort":1}`: `invalid parentIP "1.2.3": want`,
		`{"proto":"tcp","childIP":"x","parentPort":1,"childPort":1}`:      `invalid childIP "x": want`,
	} {
		var s Spec
		err := json.Unmarshal([]byte(in), &s)
		if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("Unmarshal(%s) = %v, want %q matching ErrInvalidSpec", in, err, want)
		}
	}
}
