// Package apiserver serves RootlessKit's REST API (v1) on STATE/api.sock:
// the same routes, status codes, bodies and quirks, so dockerd, nerdctl,
// k3s and both rootlessctl generations work unchanged. Bad requests get a
// 4xx with a message that says what is wrong, and never disturb the ports
// already published.
package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/port"
)

// Config is what the server answers from.
type Config struct {
	// Info returns the body of GET /v1/info. If its PortDriver is nil and
	// Ports is set, Ports.Info() fills it.
	Info func() api.Info
	// Ports is the active port driver; nil for port drivers none and
	// implicit, in which case every /v1/ports request gets 400
	// "no PortDriver is available", as in RootlessKit.
	Ports port.Driver
	// Logger receives one debug line per failed request; nil discards.
	Logger *slog.Logger
}

// maxBody bounds a request body; a port spec is well under 1 KiB.
const maxBody = 64 << 10

// New returns the API handler.
func New(c Config) http.Handler {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Info == nil {
		c.Info = func() api.Info { return api.Info{APIVersion: api.Version} }
	}
	return &server{c: c, log: c.Logger.With("component", "apiserver")}
}

// ReadHeaderTimeout bounds how long a client of api.sock may take to send
// a request header; one that stalls is closed rather than held for the
// launcher's life. Idle keep-alive connections are not timed out: dockerd
// keeps one, and a close racing its next POST would fail that request.
var ReadHeaderTimeout = 10 * time.Second

// RequestTimeout bounds a whole request, header and body: a client whose
// body never arrives, or trickles in, is closed. The time between requests
// on a kept-alive connection is not counted.
var RequestTimeout = 30 * time.Second

// NewHTTPServer serves h with ReadHeaderTimeout and RequestTimeout, logging the server's own
// errors (a client gone mid-request) to log at debug level.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           refuseGuard{h},
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       RequestTimeout,
		// Negative: no idle timeout (zero would reuse ReadTimeout).
		IdleTimeout: -1,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if rc, ok := c.(*refusedConn); ok {
				return context.WithValue(ctx, refusedKey{}, rc.reason)
			}
			return ctx
		},
	}
}

type refusedKey struct{}

// refuseGuard answers 403 on connections the listener marked refused, and
// closes them after the answer.
type refuseGuard struct{ h http.Handler }

func (g refuseGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reason, ok := r.Context().Value(refusedKey{}).(string)
	if !ok {
		g.h.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	json.NewEncoder(w).Encode(api.ErrorJSON{Message: reason})
}

type server struct {
	c   Config
	log *slog.Logger
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case path == "/v1/info":
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		s.info(w, r)
	case path == "/v1/ports":
		switch r.Method {
		case http.MethodGet:
			s.listPorts(w, r)
		case http.MethodPost:
			s.addPort(w, r)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	case strings.HasPrefix(path, "/v1/ports/") && len(path) > len("/v1/ports/") && !strings.Contains(path[len("/v1/ports/"):], "/"):
		if r.Method != http.MethodDelete {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		s.removePort(w, r, path[len("/v1/ports/"):])
	default:
		http.NotFound(w, r)
	}
}

func (s *server) info(w http.ResponseWriter, r *http.Request) {
	info := s.c.Info()
	if info.PortDriver == nil && s.c.Ports != nil {
		pi := s.c.Ports.Info()
		info.PortDriver = &pi
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *server) listPorts(w http.ResponseWriter, r *http.Request) {
	if s.c.Ports == nil {
		s.writeError(w, r, port.ErrNoDriver, http.StatusBadRequest)
		return
	}
	ports, err := s.c.Ports.List(r.Context())
	if err != nil {
		s.writeError(w, r, err, http.StatusInternalServerError)
		return
	}
	if len(ports) == 0 {
		ports = nil // RootlessKit answers null, not []
	}
	writeJSON(w, http.StatusOK, ports)
}

func (s *server) addPort(w http.ResponseWriter, r *http.Request) {
	if s.c.Ports == nil {
		s.writeError(w, r, port.ErrNoDriver, http.StatusBadRequest)
		return
	}
	spec, err := DecodePortSpec(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.writeError(w, r, err, http.StatusBadRequest)
		return
	}
	st, err := s.c.Ports.Add(r.Context(), spec)
	if err != nil {
		s.writeError(w, r, err, http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

func (s *server) removePort(w http.ResponseWriter, r *http.Request, idText string) {
	if s.c.Ports == nil {
		s.writeError(w, r, port.ErrNoDriver, http.StatusBadRequest)
		return
	}
	id, err := strconv.Atoi(idText)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("bad id %s: %w: want a number that GET /v1/ports lists", idText, err), http.StatusBadRequest)
		return
	}
	if err := s.c.Ports.Remove(r.Context(), id); err != nil {
		s.writeError(w, r, err, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// DecodePortSpec reads one JSON port spec, as POST /v1/ports receives it,
// and validates it. Unknown fields are ignored, as RootlessKit does.
func DecodePortSpec(r io.Reader) (port.Spec, error) {
	var spec port.Spec
	if err := json.NewDecoder(r).Decode(&spec); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return spec, fmt.Errorf("request body larger than %d bytes", mbe.Limit)
		}
		if errors.Is(err, port.ErrInvalidSpec) {
			return spec, err // names the field and what it wants
		}
		// RootlessKit's message comes first, as clients may look for it.
		hint := "send a port spec as JSON"
		if errors.Is(err, io.EOF) {
			hint = "the request body is empty; " + hint
		}
		return spec, fmt.Errorf(`%w: %s, such as {"proto":"tcp","parentPort":8080,"childPort":80}`, err, hint)
	}
	if err := port.Validate(spec); err != nil {
		return spec, err
	}
	return spec, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are marshalled; this cannot fail.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

// writeError writes RootlessKit's error body. RootlessKit sets the
// Content-Type after WriteHeader, so clients see text/plain; we send the
// same.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error, code int) {
	s.log.DebugContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.ErrorJSON{Message: err.Error()})
}
