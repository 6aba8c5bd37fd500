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
	default:
		if !s.ports().serve(s, w, r) {
			http.NotFound(w, r)
		}
	}
}

// ports is /v1/ports. RootlessKit lists no ports as null.
func (s *server) ports() collection[port.Spec, port.Status] {
	return collection[port.Spec, port.Status]{path: "/v1/ports", decode: DecodePortSpec, store: s.c.Ports, missing: port.ErrNoDriver, nullEmpty: true}
}

func (s *server) info(w http.ResponseWriter, r *http.Request) {
	info := s.c.Info()
	if info.PortDriver == nil && s.c.Ports != nil {
		pi := s.c.Ports.Info()
		info.PortDriver = &pi
	}
	writeJSON(w, http.StatusOK, info)
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
