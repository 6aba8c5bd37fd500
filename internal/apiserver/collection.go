package apiserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// store is what a collection serves: port.Driver for /v1/ports, Forwards
// for /v1/forwards.
type store[S, T any] interface {
	Add(ctx context.Context, s S) (T, error)
	List(ctx context.Context) ([]T, error)
	Remove(ctx context.Context, id int) error
}

// collection is a REST collection of specs S that become T once added:
//
//	GET    path      200, the list
//	POST   path      201, the new T; body: an S that decode reads
//	DELETE path/ID   200
//
// /v1/ports and /v1/forwards are two of them.
type collection[S, T any] struct {
	path   string
	decode func(io.Reader) (S, error)
	store  store[S, T] // nil: every request fails with missing
	// missing is the error for a nil store (port.ErrNoDriver).
	missing error
	// nullEmpty lists an empty collection as null, not [] (RootlessKit's
	// /v1/ports does).
	nullEmpty bool
}

// serve answers r if its path is c.path or c.path/ID, and reports whether
// it did.
func (c collection[S, T]) serve(s *server, w http.ResponseWriter, r *http.Request) bool {
	path := r.URL.Path
	switch {
	case path == c.path:
		switch r.Method {
		case http.MethodGet:
			c.list(s, w, r)
		case http.MethodPost:
			c.add(s, w, r)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	case strings.HasPrefix(path, c.path+"/") && len(path) > len(c.path)+1 && !strings.Contains(path[len(c.path)+1:], "/"):
		if r.Method != http.MethodDelete {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return true
		}
		c.remove(s, w, r, path[len(c.path)+1:])
	default:
		return false
	}
	return true
}

func (c collection[S, T]) list(s *server, w http.ResponseWriter, r *http.Request) {
	if c.store == nil {
		s.writeError(w, r, c.missing, http.StatusBadRequest)
		return
	}
	list, err := c.store.List(r.Context())
	if err != nil {
		s.writeError(w, r, err, http.StatusInternalServerError)
		return
	}
	if len(list) == 0 && c.nullEmpty {
		list = nil
	}
	writeJSON(w, http.StatusOK, list)
}

func (c collection[S, T]) add(s *server, w http.ResponseWriter, r *http.Request) {
	if c.store == nil {
		s.writeError(w, r, c.missing, http.StatusBadRequest)
		return
	}
	spec, err := c.decode(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.writeError(w, r, err, http.StatusBadRequest)
		return
	}
	st, err := c.store.Add(r.Context(), spec)
	if err != nil {
		s.writeError(w, r, err, http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

func (c collection[S, T]) remove(s *server, w http.ResponseWriter, r *http.Request, idText string) {
	if c.store == nil {
		s.writeError(w, r, c.missing, http.StatusBadRequest)
		return
	}
	id, err := strconv.Atoi(idText)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("bad id %s: %w: want a number that GET %s lists", idText, err, c.path), http.StatusBadRequest)
		return
	}
	if err := c.store.Remove(r.Context(), id); err != nil {
		s.writeError(w, r, err, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}
