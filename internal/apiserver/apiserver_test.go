package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/api/client"
	"github.com/unroot/unroot/internal/testutil"
	"github.com/unroot/unroot/port"
)

// memDriver is a port driver that forwards nothing: the seam's fake, so
// these tests check the HTTP contract alone. Real drivers are exercised
// through this server in test/e2e.
type memDriver struct {
	mu    sync.Mutex
	ports []port.Status
	next  int
}

func (d *memDriver) Info() api.PortDriverInfo {
	return api.PortDriverInfo{Driver: "builtin", Protos: []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"}}
}

func (d *memDriver) Add(ctx context.Context, s port.Spec) (port.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := port.Validate(s); err != nil {
		return port.Status{}, err
	}
	if err := port.Conflict(d.ports, s); err != nil {
		return port.Status{}, err
	}
	d.next++
	st := port.Status{ID: d.next, Spec: s}
	d.ports = append(d.ports, st)
	return st, nil
}

func (d *memDriver) List(ctx context.Context) ([]port.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ports), nil
}

func (d *memDriver) Remove(ctx context.Context, id int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, p := range d.ports {
		if p.ID == id {
			d.ports = slices.Delete(d.ports, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("unknown id: %d", id)
}

func (d *memDriver) Close() error { return nil }

func testInfo() api.Info {
	return api.Info{APIVersion: api.Version, Version: "test", StateDir: "/state", ChildPID: 42, NetworkDriver: &api.NetworkDriverInfo{Driver: "slirp4netns", DNS: []string{"10.0.2.3"}, ChildIP: "10.0.2.100"}}
}

// serve runs the API on a real socket and returns its path.
func serve(t *testing.T, drv port.Driver) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(New(Config{Info: testInfo, Ports: drv}), nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("api.sock left behind after Close: %v", err)
		}
	})
	return path
}

func rawClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
}

func TestContract(t *testing.T) {
	path := serve(t, &memDriver{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("api.sock mode = %v, want a 0600 socket", fi.Mode())
	}
	hc := rawClient(path)
	const jsonCT, errCT = "application/json", "text/plain; charset=utf-8"
	steps := []struct {
		method, path, body string
		code               int
		ct, want           string
	}{
		{"GET", "/v1/ports", "", 200, jsonCT, "null"},
		{"POST", "/v1/ports", `{"proto":"tcp","parentIP":"127.0.0.1","parentPort":8080,"childPort":80}`, 201, jsonCT, `{"id":1,"spec":{"proto":"tcp","parentIP":"127.0.0.1","parentPort":8080,"childPort":80}}`},
		{"POST", "/v1/ports", `{"proto":"udp","parentPort":8080,"childPort":80,"extra":true}`, 201, jsonCT, `{"id":2,"spec":{"proto":"udp","parentPort":8080,"childPort":80}}`},
		{"POST", "/v1/ports", `{"proto":"tcp4","parentIP":"127.0.0.1","parentPort":8080,"childPort":81}`, 400, errCT, `{"message":"conflict with ID 1 (tcp 127.0.0.1:8080): remove it first or pick another parent port"}` + "\n"},
		{"POST", "/v1/ports", `{"proto":"tcp",`, 400, errCT, `{"message":"unexpected EOF: send a port spec as JSON, such as {\"proto\":\"tcp\",\"parentPort\":8080,\"childPort\":80}"}` + "\n"},
		{"POST", "/v1/ports", ``, 400, errCT, `{"message":"EOF: the request body is empty; send a port spec as JSON, such as {\"proto\":\"tcp\",\"parentPort\":8080,\"childPort\":80}"}` + "\n"},
		{"POST", "/v1/ports", `[1]`, 400, errCT, `{"message":"json: cannot unmarshal array into Go value of type port.Spec: send a port spec as JSON, such as {\"proto\":\"tcp\",\"parentPort\":8080,\"childPort\":80}"}` + "\n"},
		{"POST", "/v1/ports", `{"proto":"icmp","parentPort":1,"childPort":1}`, 400, errCT, `{"message":"unknown proto \"icmp\": want one of tcp, tcp4, tcp6, udp, udp4, udp6"}` + "\n"},
		{"POST", "/v1/ports", `{"proto":"tcp","parentPort":0,"childPort":1}`, 400, errCT, `{"message":"invalid parentPort 0: want 1 to 65535"}` + "\n"},
		{"POST", "/v1/ports", `{"proto":"tcp","parentPort":1,"childPort":65536}`, 400, errCT, `{"message":"invalid childPort 65536: want 1 to 65535"}` + "\n"},
		{"POST", "/v1/ports", `{"proto":"tcp","parentIP":"1.2.3","parentPort":1,"childPort":1}`, 400, errCT, `{"message":"invalid parentIP \"1.2.3\": want an IPv4 or IPv6 address without zone, or empty for all addresses"}` + "\n"},
		{"POST", "/v1/ports", `{"proto":"tcp","parentPort":"80","childPort":1}`, 400, errCT, ""},
		{"GET", "/v1/ports", "", 200, jsonCT, `[{"id":1,"spec":{"proto":"tcp","parentIP":"127.0.0.1","parentPort":8080,"childPort":80}},{"id":2,"spec":{"proto":"udp","parentPort":8080,"childPort":80}}]`},
		{"DELETE", "/v1/ports/abc", "", 400, errCT, `{"message":"bad id abc: strconv.Atoi: parsing \"abc\": invalid syntax: want a number that GET /v1/ports lists"}` + "\n"},
		{"DELETE", "/v1/ports/99", "", 400, errCT, `{"message":"unknown id: 99"}` + "\n"},
		{"DELETE", "/v1/ports/2", "", 200, "", ""},
		{"GET", "/v1/ports", "", 200, jsonCT, `[{"id":1,"spec":{"proto":"tcp","parentIP":"127.0.0.1","parentPort":8080,"childPort":80}}]`},
		{"GET", "/v1/info", "", 200, jsonCT, `{"apiVersion":"1.1.3","version":"test","stateDir":"/state","childPID":42,"networkDriver":{"driver":"slirp4netns","dns":["10.0.2.3"],"childIP":"10.0.2.100"},"portDriver":{"driver":"builtin","protos":["tcp","tcp4","tcp6","udp","udp4","udp6"]}}`},
		{"PUT", "/v1/info", "", 405, "", ""},
		{"DELETE", "/v1/ports", "", 405, "", ""},
		{"GET", "/v1/ports/1", "", 405, "", ""},
		{"GET", "/v1/nope", "", 404, errCT, "404 page not found\n"},
		{"GET", "/v1/ports/1/x", "", 404, errCT, "404 page not found\n"},
		{"GET", "/v2/info", "", 404, errCT, "404 page not found\n"},
	}
	for _, s := range steps {
		req, _ := http.NewRequest(s.method, "http://rootlesskit"+s.path, strings.NewReader(s.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != s.code {
			t.Errorf("%s %s %s: status %d, want %d (body %q)", s.method, s.path, s.body, resp.StatusCode, s.code, body)
		}
		if ct := resp.Header.Get("Content-Type"); s.ct != "" && ct != s.ct {
			t.Errorf("%s %s: Content-Type %q, want %q", s.method, s.path, ct, s.ct)
		}
		if s.code == 400 && !bytes.HasPrefix(body, []byte(`{"message":"`)) {
			t.Errorf("%s %s %s: error body %q is not {\"message\":...}", s.method, s.path, s.body, body)
		}
		if (s.want != "" || s.code == 405) && string(body) != s.want {
			t.Errorf("%s %s %s: body\n%q, want\n%q", s.method, s.path, s.body, body, s.want)
		}
	}
}

// A client that never finishes its request header is closed, not held.
func TestStalledClientClosed(t *testing.T) {
	defer func(d time.Duration) { ReadHeaderTimeout = d }(ReadHeaderTimeout)
	ReadHeaderTimeout = 100 * time.Millisecond
	path := serve(t, &memDriver{})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /v1/info HTTP/1.1\r\nHost: x\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c)
	if err != nil {
		t.Errorf("the server held a client with half a request header: %v", err)
	}
}

// A client whose request body never arrives (or trickles in) is closed once
// the whole request has taken RequestTimeout, not held for the launcher's life.
func TestStalledBodyClosed(t *testing.T) {
	defer func(d time.Duration) { RequestTimeout = d }(RequestTimeout)
	RequestTimeout = 200 * time.Millisecond
	path := serve(t, &memDriver{})
	for _, method := range []string{"POST /v1/ports", "GET /v1/info"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{", method)
		// Trickle: a byte now and then keeps any per-read timeout from firing.
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c)
		close(stop)
		// The server closes with the trickled bytes unread, so the close
		// may come back as a reset rather than EOF; only the deadline
		// means it held on.
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: the server held a client whose body never came: %v", method, err)
		} else if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: reading until the server closes: %v", method, err)
		}
	}
}

// An idle keep-alive connection (dockerd keeps one) outlives RequestTimeout.
func TestIdleKeepAliveKept(t *testing.T) {
	defer func(d time.Duration) { RequestTimeout = d }(RequestTimeout)
	RequestTimeout = 100 * time.Millisecond
	path := serve(t, &memDriver{})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 2 {
		if i > 0 {
			time.Sleep(4 * RequestTimeout)
		}
		fmt.Fprint(c, "GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on a kept-alive connection: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
}

func TestNoPortDriver(t *testing.T) {
	h := New(Config{Info: testInfo})
	for _, r := range []*http.Request{
		httptest.NewRequest("GET", "/v1/ports", nil),
		httptest.NewRequest("POST", "/v1/ports", strings.NewReader(`{"proto":"tcp","parentPort":1,"childPort":1}`)),
		httptest.NewRequest("DELETE", "/v1/ports/1", nil),
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 400 || w.Body.String() != `{"message":"no PortDriver is available"}`+"\n" {
			t.Errorf("%s %s without a driver: %d %q", r.Method, r.URL.Path, w.Code, w.Body.String())
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/info", nil))
	if strings.Contains(w.Body.String(), "portDriver") {
		t.Errorf("info without a driver has a portDriver: %s", w.Body.String())
	}
}

func TestClient(t *testing.T) {
	path := serve(t, &memDriver{})
	c, err := client.New(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil || info.APIVersion != "1.1.3" || info.PortDriver == nil || info.NetworkDriver.ChildIP != "10.0.2.100" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if ps, err := c.ListPorts(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("ListPorts = %v, %v; want none", ps, err)
	}
	st, err := c.AddPort(ctx, port.Spec{Proto: "tcp", ParentPort: 9000, ChildPort: 90})
	if err != nil || st.ID != 1 {
		t.Fatalf("AddPort = %+v, %v", st, err)
	}
	_, err = c.AddPort(ctx, port.Spec{Proto: "tcp", ParentPort: 9000, ChildPort: 90})
	if ae, ok := err.(*client.Error); !ok || ae.Status != 400 || !strings.HasPrefix(ae.Message, "conflict with ID 1") {
		t.Fatalf("duplicate AddPort error = %#v", err)
	}
	if err := c.RemovePort(ctx, 7); err == nil || err.Error() != "unknown id: 7" {
		t.Fatalf("RemovePort(7) = %v", err)
	}
	if err := c.RemovePort(ctx, 1); err != nil {
		t.Fatal(err)
	}
	bad, _ := client.New(filepath.Join(t.TempDir(), "missing.sock"))
	if _, err := bad.Info(ctx); err == nil || !strings.Contains(err.Error(), "is the launcher running") {
		t.Fatalf("Info on a missing socket = %v", err)
	}
}

// The owner and root are served; a peer with another uid that can open the
// socket gets a 403 that says why (RootlessKit serves root too; a closed
// connection made rootlessctl print a broken pipe).
func TestPeerCredentials(t *testing.T) {
	testutil.RequireRoot(t, "connect as other uids")
	const owner = 65533
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*ownerListener).uid = owner // as if a user other than root launched
	var logBuf testutil.SyncBuffer
	ln.(*ownerListener).log = slog.New(slog.NewTextHandler(&logBuf, nil))
	// One line per interval: an hour, so that however slowly the curls
	// below run, they fall in the first.
	ln.(*ownerListener).refused.Every = time.Hour
	srv := NewHTTPServer(New(Config{Info: testInfo, Ports: &memDriver{}}), nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	os.Chmod(filepath.Dir(path), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(path)), 0o755)
	os.Chmod(path, 0o666) // let the other uids reach the credential check
	curlAs := func(uid uint32) (code, body string) {
		t.Helper()
		cmd := exec.Command("curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", "--unix-socket", path, "http://rootlesskit/v1/info")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl as uid %d: %v: %s", uid, err, out)
		}
		o := strings.TrimSpace(string(out))
		i := strings.LastIndex(o, "\n")
		return o[i+1:], strings.TrimSpace(o[:max(i, 0)])
	}
	if code, body := curlAs(65534); code != "403" || !strings.Contains(body, `"message":"api.sock serves only uid 65533 (its owner) and root, not uid 65534`) {
		t.Errorf("uid 65534: status %s, body %s; want 403 with the reason", code, body)
	}
	// A client refused again and again is logged once (then counted).
	curlAs(65534)
	curlAs(65534)
	if n := strings.Count(logBuf.String(), "refused an api.sock client"); n != 1 {
		t.Errorf("%d log lines for 3 refused requests, want 1:\n%s", n, logBuf.String())
	}
	if code, body := curlAs(owner); code != "200" || !strings.Contains(body, "apiVersion") {
		t.Errorf("owner: status %s, body %s; want 200 with info", code, body)
	}
	// Root (this test) is served too, after a refused peer as before.
	resp, err := rawClient(path).Get("http://rootlesskit/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("root: status %d, want 200", resp.StatusCode)
	}
}

func FuzzDecodePortSpec(f *testing.F) {
	for _, s := range []string{`{"proto":"tcp","parentIP":"127.0.0.1","parentPort":8080,"childPort":80}`, `{"proto":"udp6","parentIP":"::1","parentPort":1,"childIP":"::1","childPort":65535}`, `{`, `null`, `{"parentPort":1e9}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodePortSpec(bytes.NewReader(b))
		if err != nil {
			return
		}
		if err := port.Validate(s); err != nil {
			t.Fatalf("decoded %+v that Validate rejects: %v", s, err)
		}
	})
}

// Any request leaves the published ports as they were unless it is a
// successful add or remove, and never gets a 5xx.
func FuzzHandler(f *testing.F) {
	f.Add("POST", "/v1/ports", []byte(`{"proto":"tcp","parentPort":8080,"childPort":80}`))
	f.Add("DELETE", "/v1/ports/1", []byte(nil))
	f.Add("GET", "/v1/info", []byte(nil))
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		drv := &memDriver{}
		drv.Add(context.Background(), port.Spec{Proto: "tcp", ParentPort: 8080, ChildPort: 80})
		h := New(Config{Info: testInfo, Ports: drv})
		req, err := http.NewRequest(method, "http://rootlesskit"+path, bytes.NewReader(body))
		if err != nil || req.URL.Path == "" {
			return
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s: status %d", method, path, w.Code)
		}
		ps, _ := drv.List(context.Background())
		changed := len(ps) != 1 || ps[0].ID != 1
		if changed && w.Code/100 != 2 {
			t.Fatalf("%s %s failed with %d but changed the ports: %+v", method, path, w.Code, ps)
		}
	})
}
