package parse

import (
	"strings"
	"testing"
	"time"
)

const iperfTCP = `{"start":{"test_start":{"protocol":"TCP"}},"intervals":[],
"end":{"streams":[],"sum_sent":{"bytes":5152440320,"bits_per_second":41210373857.0,"sender":true},
"sum_received":{"start":0,"end":1.000222,"seconds":1.000222,"bytes":5152440320,"bits_per_second":41210373857.003746,"sender":true}}}`

// iperf3 3.12 prints sum, sum_sent and sum_received for UDP.
const iperfUDP = `{"start":{"test_start":{"protocol":"UDP"}},
"end":{"sum":{"bytes":124927600,"bits_per_second":999331859.4645077,"lost_packets":551,"packets":89234,"lost_percent":0.617477643050855},
"sum_sent":{"bytes":124927600,"bits_per_second":999331859.4645077,"lost_packets":0,"packets":89234,"lost_percent":0},
"sum_received":{"bytes":124156200,"bits_per_second":993047018.4082446,"lost_packets":551,"packets":89234,"lost_percent":0.617477643050855}}}`

// Older iperf3 prints only sum for UDP.
const iperfUDPOld = `{"start":{"test_start":{"protocol":"UDP"}},
"end":{"sum":{"bytes":1000,"bits_per_second":8000,"lost_percent":50}}}`

func TestParseIperf3(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantBytes float64
		wantGood  float64
		wantLoss  float64
		wantErr   string
	}{
		{"tcp", iperfTCP, 5152440320, 41210373857.003746, 0, ""},
		{"tcp with launcher log around", "time=x level=warning\n" + iperfTCP + "\n", 5152440320, 41210373857.003746, 0, ""},
		{"udp 3.12", iperfUDP, 124156200, 999331859.4645077 * (1 - 0.617477643050855/100), 0.617477643050855, ""},
		{"udp old", iperfUDPOld, 1000, 4000, 50, ""},
		{"error field", `{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`, 0, 0, 0, "Connection refused"},
		{"unfinished", `{"start":{"test_start":{"protocol":"TCP"}},"end":{}}`, 0, 0, 0, "did not finish"},
		{"not json", "iperf3: error - unable to connect", 0, 0, 0, "no JSON object"},
		{"negative", `{"start":{},"end":{"sum_received":{"bytes":-1,"bits_per_second":1}}}`, 0, 0, 0, "implausible"},
		{"udp no loss", `{"start":{"test_start":{"protocol":"UDP"}},"end":{"sum":{"bytes":1,"bits_per_second":1}}}`, 0, 0, 0, "lost_percent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIperf3([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Bytes != tt.wantBytes || abs(got.Goodput()-tt.wantGood) > 1 || got.LostPercent != tt.wantLoss {
				t.Errorf("got bytes %v goodput %v loss %v, want %v %v %v", got.Bytes, got.Goodput(), got.LostPercent, tt.wantBytes, tt.wantGood, tt.wantLoss)
			}
		})
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

const wrkLatency = `Running 1s test @ http://127.0.0.1:45300/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   798.42us  243.83us   2.31ms   60.50%
    Req/Sec     1.21k   340.98     1.81k    63.64%
  Latency Distribution
     50%    0.86ms
     75%    0.97ms
     90%    1.10ms
     99%    1.32ms
  1321 requests in 1.10s, 4.68MB read
Requests/sec:   1201.27
Transfer/sec:      4.26MB
`

const wrkErrors = `Running 1s test @ http://127.0.0.1:45201/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
  0 requests in 1.10s, 0.00B read
  Socket errors: connect 0, read 3, write 90562, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:      0.00
Transfer/sec:       0.00B
`

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Wrk
		wantErr string
	}{
		{"latency", wrkLatency, Wrk{Requests: 1321, RequestsPerSec: 1201.27, P50: 860 * time.Microsecond, P99: 1320 * time.Microsecond}, ""},
		{"errors", wrkErrors, Wrk{Requests: 0, RequestsPerSec: 0, Errors: 90573}, ""},
		{"plain", "  5 requests in 1.00s, 1B read\nRequests/sec: 5.00\n", Wrk{Requests: 5, RequestsPerSec: 5}, ""},
		{"empty", "", Wrk{}, "no \"Requests/sec\""},
		{"unable to connect", "unable to connect to 127.0.0.1:1 Connection refused\n", Wrk{}, "did wrk fail"},
		{"bad rate", "1 requests in 1s\nRequests/sec: x\n", Wrk{}, "not a rate"},
		{"bad unit", "  Latency Distribution\n  50% 3.0x\n", Wrk{}, "unknown unit"},
		{"seconds", "  Latency Distribution\n     50%    2.00s\n     99%    1.00m\n 1 requests in 1s\nRequests/sec: 1\n", Wrk{Requests: 1, RequestsPerSec: 1, P50: 2 * time.Second, P99: time.Minute}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWrk(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Stat
		wantErr string
	}{
		{"plain", "15620 (head) R 14242 14242 4433 0 -1 4194304 101 0 0 0 7 9 0 0 20 0 1 0 432410", Stat{Comm: "head", State: "R", PPid: 14242, UTime: 7, STime: 9}, ""},
		{"comm with parens and spaces", "1 (a) b) (c) S 5 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1", Stat{Comm: "a) b) (c", State: "S", PPid: 5, UTime: 3, STime: 4}, ""},
		{"short", "1 (x) S 1 2", Stat{}, "fields after comm"},
		{"no comm", "1 x S", Stat{}, "no (comm)"},
		{"bad utime", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u 4 0", Stat{}, "utime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParsePss(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string
	}{
		{"rollup", "5599232c9000-7ffc7f408000 ---p 00000000 00:00 0  [rollup]\nRss:  1728 kB\nPss:  318 kB\nPss_Dirty:  112 kB\n", 318 * 1024, ""},
		{"missing", "Rss: 1 kB\n", 0, "no \"Pss"},
		{"bad", "Pss: x kB\n", 0, "not a size"},
		{"overflow", "Pss: 10000000000000000 kB\n", 0, "too large"},
		{"largest", "Pss: 9007199254740991 kB\n", 9007199254740991 * 1024, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePss(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %d, %v, want %d", got, err, tt.want)
			}
		})
	}
}

func FuzzParseIperf3(f *testing.F) {
	for _, s := range []string{iperfTCP, iperfUDP, iperfUDPOld, "{}", "{\"error\":\"x\"}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseIperf3([]byte(s))
		if err == nil && (r.Bytes < 0 || r.Goodput() < 0 || r.LostPercent > 100) {
			t.Fatalf("accepted implausible %+v", r)
		}
	})
}

func FuzzParseWrk(f *testing.F) {
	for _, s := range []string{wrkLatency, wrkErrors, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWrk(s)
		if err == nil && (w.RequestsPerSec < 0 || w.Requests < 0 || w.Errors < 0 || w.P50 < 0 || w.P99 < 0) {
			t.Fatalf("accepted negative %+v", w)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add("15620 (head) R 14242 14242 4433 0 -1 4194304 101 0 0 0 7 9 0 0 20 0 1 0 432410")
	f.Add("1 () S")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseStat(s)
		if err == nil && !strings.Contains(s, "("+st.Comm+")") {
			t.Fatalf("comm %q not in input", st.Comm)
		}
	})
}

func FuzzParsePss(f *testing.F) {
	f.Add("Pss: 318 kB\n")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParsePss(s)
		if err == nil && n < 0 {
			t.Fatalf("negative size %d", n)
		}
	})
}

func TestSnapshotDate(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"0.0~git20230309.7c7625d-1", 20230309, true},
		{"0.0~git20240624.1ee2eca-1", 20240624, true},
		{"2025_01_21.4f2c8e7-1", 0, false},
		{"0.0~git2023", 0, false},
		{"0.0~gitabcdefgh", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := SnapshotDate(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("SnapshotDate(%q) = %d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzSnapshotDate(f *testing.F) {
	f.Add("0.0~git20230309.7c7625d-1")
	f.Fuzz(func(t *testing.T, s string) {
		if n, ok := SnapshotDate(s); ok && (n < 19700101 || n > 99999999) {
			t.Fatalf("SnapshotDate(%q) = %d", s, n)
		}
	})
}
