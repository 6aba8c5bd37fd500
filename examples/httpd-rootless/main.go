// Command httpd-rootless is a small HTTP server that makes itself rootless
// with one call to the rootless package (k3s's profile), then publishes its
// own port through the API socket from inside, so curl on the host reaches
// it:
//
//	httpd-rootless -listen 8080 -publish 18080 &
//	curl http://127.0.0.1:18080/
//
// The flags other than -listen and -publish exist for the tests: -report
// prints what the daemon sees (environment, interfaces, API info), -dial and
// -write probe the network and the copied-up directories, -tmpfs mounts in
// the daemon phase through Profile.Mount, -exit ends the
// daemon at once with a given status, and GET /exit?code=N ends it later.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/port"
	"github.com/unroot/unroot/rootless"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	stateDir := flag.String("state", "", "state directory (default: a private temporary one)")
	listen := flag.Int("listen", 8080, "port to serve on inside the namespace")
	publish := flag.Int("publish", 0, "host port on 127.0.0.1 to publish -listen on (0: none)")
	report := flag.Bool("report", false, "print what the daemon sees as one JSON line")
	exitNow := flag.Int("exit", -1, "exit at once with this status instead of serving")
	tmpfs := flag.String("tmpfs", "", "directory to mount a tmpfs on in the daemon phase (Profile.Mount)")
	var dials, writes, sysctls listFlag
	flag.Var(&dials, "dial", "TCP address to try from inside, for -report (repeatable)")
	flag.Var(&writes, "write", "directory to try creating a file in, for -report (repeatable)")
	flag.Var(&sysctls, "sysctl", "extra KEY=VALUE the host must have (repeatable)")
	flag.Parse()

	p := rootless.K3s()
	p.Logger = slog.New(lineHandler{w: os.Stderr})
	for _, s := range sysctls {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "httpd-rootless: -sysctl %q: must be KEY=VALUE\n", s)
			os.Exit(2)
		}
		p.Sysctls = append(p.Sysctls, rootless.Sysctl{Key: k, Value: v})
	}
	if *tmpfs != "" {
		// The mount hook runs inside the namespaces, as their root, before
		// Run returns: the place for a daemon's own mounts.
		p.Mount = func(rootless.Daemon) error {
			if err := syscall.Mount("tmpfs", *tmpfs, "tmpfs", 0, "mode=0755"); err != nil {
				return fmt.Errorf("mount tmpfs on %s: %w", *tmpfs, err)
			}
			return nil
		}
	}
	d, err := p.Run(*stateDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpd-rootless:", err)
		os.Exit(1)
	}
	// From here on this is the daemon, root of its own namespaces.
	if *report {
		b, _ := json.Marshal(look(d, dials, writes))
		fmt.Println("report:", string(b))
	}
	if *exitNow >= 0 {
		os.Exit(*exitNow)
	}
	if err := serve(d, *listen, *publish); err != nil {
		fmt.Fprintln(os.Stderr, "httpd-rootless:", err)
		os.Exit(1)
	}
}

func serve(d rootless.Daemon, listen, publish int) error {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(listen))
	if err != nil {
		return fmt.Errorf("listen on :%d: %w", listen, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if publish != 0 {
		c, err := d.Client()
		if err != nil {
			return err
		}
		st, err := c.AddPort(ctx, port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: publish, ChildPort: listen})
		if err != nil {
			return fmt.Errorf("publish 127.0.0.1:%d: %w", publish, err)
		}
		fmt.Printf("published id=%d 127.0.0.1:%d -> %d\n", st.ID, publish, listen)
	}
	exit := make(chan int, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from httpd-rootless, uid %d inside, client %s\n", os.Getuid(), r.RemoteAddr)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil || code < 0 || code > 255 {
			http.Error(w, "code must be 0..255", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "exiting with %d\n", code)
		select {
		case exit <- code:
		default:
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Println("ready")
	code := 0
	select {
	case code = <-exit:
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-served
	os.Exit(code)
	return nil
}

type iface struct {
	Name  string   `json:"name"`
	MTU   int      `json:"mtu"`
	Addrs []string `json:"addrs"`
}

type seen struct {
	Sock     string            `json:"sock"`
	PkgSock  string            `json:"pkgSock"`
	StateDir string            `json:"stateDir"`
	UID      int               `json:"uid"`
	PID      int               `json:"pid"`
	PPID     int               `json:"ppid"`
	ProcPID  string            `json:"procPID"` // as /proc/self says: the same as PID only with a fresh /proc
	Env      []string          `json:"env"`
	Ifaces   []iface           `json:"ifaces"`
	Info     *api.Info         `json:"info"`
	InfoErr  string            `json:"infoErr,omitempty"`
	Dial     map[string]string `json:"dial"`
	Write    map[string]string `json:"write"`
}

func look(d rootless.Daemon, dials, writes []string) seen {
	s := seen{Sock: d.Sock, PkgSock: rootless.Sock, StateDir: d.StateDir, UID: os.Getuid(), Env: os.Environ(),
		PID: os.Getpid(), PPID: os.Getppid(), Dial: map[string]string{}, Write: map[string]string{}}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		s.ProcPID, _, _ = strings.Cut(string(b), " ")
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		x := iface{Name: i.Name, MTU: i.MTU}
		as, _ := i.Addrs()
		for _, a := range as {
			x.Addrs = append(x.Addrs, a.String())
		}
		s.Ifaces = append(s.Ifaces, x)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := d.Client(); err == nil {
		s.Info, err = c.Info(ctx)
		if err != nil {
			s.InfoErr = err.Error()
		}
	}
	for _, a := range dials {
		s.Dial[a] = "ok"
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", a)
		if err != nil {
			s.Dial[a] = err.Error()
			continue
		}
		c.Close()
	}
	for _, dir := range writes {
		s.Write[dir] = "ok"
		f := filepath.Join(dir, ".httpd-rootless-probe")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			s.Write[dir] = err.Error()
			continue
		}
		os.Remove(f)
	}
	return s
}

// lineHandler prints one "httpd-rootless: warning: …" line per record, so
// the warnings read like the rest of the program's messages.
type lineHandler struct{ w io.Writer }

func (h lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h lineHandler) Handle(_ context.Context, r slog.Record) error {
	lvl := "warning"
	if r.Level >= slog.LevelError {
		lvl = "error"
	}
	_, err := fmt.Fprintf(h.w, "httpd-rootless: %s: %s\n", lvl, r.Message)
	return err
}

func (h lineHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h lineHandler) WithGroup(string) slog.Handler      { return h }
