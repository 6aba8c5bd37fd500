package forward

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String() of the result
		wantErr string
	}{
		{in: "127.0.0.1:5000:5000/tcp", want: "127.0.0.1:5000:5000/tcp"},
		{in: "127.0.0.1:5000:80", want: "127.0.0.1:5000:80/tcp"},
		{in: "[::1]:53:5353/udp", want: "[::1]:53:5353/udp"},
		{in: "192.0.2.7:6379:6379/tcp", want: "192.0.2.7:6379:6379/tcp"},
		{in: "/run/user/1000/db.sock:5432", want: "/run/user/1000/db.sock:5432/tcp"},
		{in: "/tmp/a:b.sock:80/tcp", want: "/tmp/a:b.sock:80/tcp"},
		{in: "[::ffff:127.0.0.1]:1:2/tcp", want: "127.0.0.1:1:2/tcp"},
		{in: "", wantErr: "want HOSTADDR:HOSTPORT:NSPORT/PROTO"},
		{in: "5000", wantErr: "want HOSTADDR"},
		{in: "5000:5000/tcp", wantErr: "is not IP:PORT"},
		{in: "localhost:5000:5000", wantErr: "is not IP:PORT"},
		{in: "::1:53:53/udp", wantErr: "in brackets"},
		{in: "127.0.0.1:5000:x/tcp", wantErr: "not a number"},
		{in: "127.0.0.1:5000:5000/sctp", wantErr: "want tcp or udp"},
		{in: "127.0.0.1:5000:0", wantErr: "namespace port 0"},
		{in: "127.0.0.1:5000:65536", wantErr: "namespace port 65536"},
		{in: "127.0.0.1:0:80", wantErr: "host port 0"},
		{in: "0.0.0.0:5000:80", wantErr: "not one service's address"},
		{in: "[::]:5000:80", wantErr: "not one service's address"},
		{in: "224.0.0.1:5000:80/udp", wantErr: "not one service's address"},
		{in: "/run/x.sock:53/udp", wantErr: "TCP port, not udp"},
		{in: "[fe80::1%eth0]:5000:80", wantErr: "zone"},
		{in: "/" + strings.Repeat("x", 120) + ":80", wantErr: "longer than"},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSpec(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseSpec(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestSpecJSON(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000:5001/tcp": `{"proto":"tcp","hostIP":"127.0.0.1","hostPort":5000,"nsPort":5001}`,
		"/run/db.sock:5432":       `{"proto":"tcp","hostPath":"/run/db.sock","nsPort":5432}`,
	} {
		sp, err := ParseSpec(in)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(sp)
		if string(b) != want {
			t.Errorf("json(%s) = %s, want %s", in, b, want)
		}
		var back Spec
		if err := json.Unmarshal(b, &back); err != nil || back != sp {
			t.Errorf("json round trip of %s = %+v, %v", in, back, err)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5000:5000/tcp", "[::1]:53:53/udp", "/run/x.sock:80", ":", "/:/", "[::]:1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseSpec(%q) error spans lines", s)
			}
			return
		}
		if err := Validate(sp); err != nil {
			t.Fatalf("ParseSpec(%q) = %+v, which Validate refuses: %v", s, sp, err)
		}
		back, err := ParseSpec(sp.String())
		if err != nil || back != sp {
			t.Fatalf("ParseSpec(%q).String() = %q parses to %+v, %v", s, sp.String(), back, err)
		}
	})
}
