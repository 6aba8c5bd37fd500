package unroot

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/port"
)

// apiHandler returns the REST API handler.
//
// TODO: switch to internal/apiserver.New(apiserver.Config{Info, Ports,
// Logger}) once the ports engineer lands it; this fallback serves only what
// the launcher itself knows.
func (l *Launcher) apiHandler() http.Handler {
	if newAPIHandler != nil {
		return newAPIHandler(l.Info, l.portDrv, l.log)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(l.Info())
	})
	noPorts := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(api.ErrorJSON{Message: port.ErrNoDriver.Error()})
	}
	mux.HandleFunc("/v1/ports", noPorts)
	mux.HandleFunc("/v1/ports/{id}", noPorts)
	return mux
}

// newAPIHandler is set when the full API server is linked in.
var newAPIHandler func(info func() api.Info, ports port.Driver, log *slog.Logger) http.Handler

// apiServer serves api.sock to processes of the same uid only.
type apiServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
	once sync.Once
}

func serveAPI(path string, h http.Handler, log *slog.Logger) (*apiServer, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	s := &apiServer{
		srv:  &http.Server{Handler: h, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)},
		ln:   &peerListener{Listener: ln, uid: uint32(os.Geteuid()), log: log},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(s.ln) }()
	return s, nil
}

func (s *apiServer) Close() error {
	var err error
	s.once.Do(func() {
		s.srv.Close()
		if e := <-s.done; e != nil && !errors.Is(e, http.ErrServerClosed) {
			err = fmt.Errorf("serve api.sock: %w", e)
		}
	})
	return err
}

// peerListener drops connections from other users: the socket's mode
// already keeps them out, this also covers a directory with looser modes.
// Root inside the namespace is our own uid as seen from here.
type peerListener struct {
	net.Listener
	uid uint32
	log *slog.Logger
}

func (p *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := p.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			return c, nil
		}
		raw, err := uc.SyscallConn()
		var uid uint32
		var cerr error
		if err == nil {
			err = raw.Control(func(fd uintptr) { uid, cerr = sys.PeerUID(fd) })
		}
		if err == nil {
			err = cerr
		}
		if err != nil || uid != p.uid {
			p.log.Warn("api.sock: refused a connection from another user", "peerUID", uid, "err", err)
			c.Close()
			continue
		}
		return c, nil
	}
}
