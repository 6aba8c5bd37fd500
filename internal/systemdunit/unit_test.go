package systemdunit

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/unroot/unroot/internal/testutil"
)

// splitExec reads an ExecStart= value back into words the way systemd does
// (double quotes with C escapes, then %% and $$ collapse). It is the test's
// independent reading of systemd.service(5) "Command lines".
func splitExec(t testing.TB, s string) []string {
	var words []string
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			break
		}
		var w strings.Builder
		if s[0] == '"' {
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
					switch s[i] {
					case 'n':
						w.WriteByte('\n')
					case 't':
						w.WriteByte('\t')
					case 'r':
						w.WriteByte('\r')
					case 'x':
						var v byte
						for _, c := range s[i+1 : i+3] {
							v = v*16 + byte(strings.IndexRune("0123456789abcdef", c))
						}
						w.WriteByte(v)
						i += 2
					default:
						w.WriteByte(s[i])
					}
					continue
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				t.Fatalf("unterminated quote in %q", s)
			}
			s = s[i+1:]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			w.WriteString(s[:end])
			s = s[end:]
		}
		out := strings.ReplaceAll(w.String(), "%%", "%")
		out = strings.ReplaceAll(out, "$$", "$")
		words = append(words, out)
	}
	return words
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, w := range []string{"plain", "-p", "8080:80/tcp", "a b", `say "hi"`, `back\slash`, "100%", "$HOME", "${X}", "tab\there", "new\nline", "", "日本"} {
		got := splitExec(t, Quote(w))
		if len(got) != 1 || got[0] != w {
			t.Errorf("Quote(%q) = %s, read back as %q", w, Quote(w), got)
		}
	}
}

func FuzzQuote(f *testing.F) {
	f.Add("a b\"c\\d%e$f")
	f.Fuzz(func(t *testing.T, w string) {
		if !utf8.ValidString(w) || strings.ContainsRune(w, 0) {
			t.Skip("systemd reads UTF-8 without NUL")
		}
		q := Quote(w)
		if strings.ContainsAny(q, "\n\r") {
			t.Fatalf("Quote(%q) = %q spans lines", w, q)
		}
		if got := splitExec(t, q); len(got) != 1 || got[0] != w {
			t.Fatalf("Quote(%q) = %s, read back as %q", w, q, got)
		}
	})
}

func TestRender(t *testing.T) {
	u := Unit{Name: "web", Unroot: "/usr/local/bin/unroot",
		Args: []string{"--ready=ports", "--state-dir=%t/unroot-web", "-p", "8080:80", "/usr/bin/python3", "-m", "http.server", "80"},
		Env:  []string{"PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello world"}}
	text, err := u.Render()
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			if k == "Environment" {
				v = lines[k] + "|" + v
			}
			lines[k] = v
		}
	}
	for k, want := range map[string]string{
		"Type": "notify", "Delegate": "yes", "KillMode": "mixed", "Restart": "on-failure", "RestartSec": "2",
		"WantedBy": "default.target", "Description": "web (unroot)",
		"Environment": `|PATH=/usr/local/bin:/usr/bin:/bin|"GREETING=hello world"`,
	} {
		if lines[k] != want {
			t.Errorf("%s=%q, want %q\n%s", k, lines[k], want, text)
		}
	}
	got := splitExec(t, lines["ExecStart"])
	want := append([]string{"/usr/local/bin/unroot", "run"}, u.Args...)
	want[3] = "--state-dir=%t/unroot-web" // the specifier stays live
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ExecStart reads back as %q, want %q", got, want)
	}
	if !strings.Contains(lines["ExecStart"], "--state-dir=%t/unroot-web") {
		t.Errorf("state dir specifier escaped: %s", lines["ExecStart"])
	}
}

// systemd itself must accept the unit without a warning.
func TestRenderVerifiedBySystemd(t *testing.T) {
	sa := testutil.RequireTool(t, "systemd-analyze", "systemd")
	u := Unit{Name: "verify-me", Unroot: "/bin/true", Restart: "always", Description: "100% odd \"name\"",
		Args: []string{"--state-dir=%t/unroot-verify-me", "sh", "-c", `echo "$HOME" 50%`}, Env: []string{"PATH=/usr/bin:/bin"}}
	text, err := u.Render()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "verify-me.service")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s\n%s", err, out, text)
	}
}

func TestRenderRejects(t *testing.T) {
	for _, tc := range []struct {
		u    Unit
		want string
	}{
		{Unit{Name: "", Unroot: "/u", Args: []string{"x"}}, "empty"},
		{Unit{Name: "a/b", Unroot: "/u", Args: []string{"x"}}, "use only"},
		{Unit{Name: "-a", Unroot: "/u", Args: []string{"x"}}, "must not start"},
		{Unit{Name: "a", Unroot: "unroot", Args: []string{"x"}}, "not absolute"},
		{Unit{Name: "a", Unroot: "/u"}, "no command"},
		{Unit{Name: "a", Unroot: "/u", Args: []string{"x"}, Restart: "sometimes"}, "on-failure"},
		{Unit{Name: "a", Unroot: "/u", Args: []string{"x"}, Env: []string{"NOEQUALS"}}, "KEY=VALUE"},
	} {
		if _, err := tc.u.Render(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Render(%+v) = %v, want error with %q", tc.u, err, tc.want)
		}
	}
}
