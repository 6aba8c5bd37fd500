package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/unroot/unroot/forward"
)

// Forwards is what /v1/forwards serves: the launcher's reverse forwards
// (package forward). The routes are unroot's own; RootlessKit has none.
type Forwards interface {
	Add(ctx context.Context, sp forward.Spec) (forward.Status, error)
	List(ctx context.Context) ([]forward.Status, error)
	Remove(ctx context.Context, id int) error
}

// WithForwards serves /v1/forwards from f and everything else from h:
//
//	GET    /v1/forwards      200, [{"id":1,"spec":{...}}, ...]
//	POST   /v1/forwards      201, {"id":N,"spec":{...}}; body: a forward.Spec
//	DELETE /v1/forwards/ID   200
//
// Errors are RootlessKit-style {"message":"..."} bodies.
func WithForwards(h http.Handler, f Forwards, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &forwardsHandler{next: h, f: f, s: &server{log: log.With("component", "apiserver")}}
}

type forwardsHandler struct {
	next http.Handler
	f    Forwards
	s    *server
}

func (fh *forwardsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := collection[forward.Spec, forward.Status]{path: "/v1/forwards", decode: DecodeForwardSpec, store: fh.f}
	if !c.serve(fh.s, w, r) {
		fh.next.ServeHTTP(w, r)
	}
}

// DecodeForwardSpec reads one JSON forward spec, as POST /v1/forwards
// receives it, and validates it.
func DecodeForwardSpec(r io.Reader) (forward.Spec, error) {
	var sp forward.Spec
	if err := json.NewDecoder(r).Decode(&sp); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return sp, fmt.Errorf("request body larger than %d bytes", mbe.Limit)
		}
		return sp, fmt.Errorf(`%w: send a forward spec as JSON, such as {"proto":"tcp","hostIP":"127.0.0.1","hostPort":5000,"nsPort":5000} or {"proto":"tcp","hostPath":"/run/db.sock","nsPort":5432}`, err)
	}
	if err := forward.Validate(sp); err != nil {
		return sp, err
	}
	return sp, nil
}
