package apiserver

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/unroot/unroot/forward"
)

type memForwards struct{ list []forward.Status }

func (m *memForwards) Add(_ context.Context, sp forward.Spec) (forward.Status, error) {
	for _, s := range m.list {
		if s.Spec.NSPort == sp.NSPort && s.Spec.Proto == sp.Proto {
			return forward.Status{}, fmt.Errorf("conflict with ID %d", s.ID)
		}
	}
	st := forward.Status{ID: len(m.list) + 1, Spec: sp}
	m.list = append(m.list, st)
	return st, nil
}
func (m *memForwards) List(context.Context) ([]forward.Status, error) {
	return append([]forward.Status{}, m.list...), nil
}
func (m *memForwards) Remove(_ context.Context, id int) error {
	for i, s := range m.list {
		if s.ID == id {
			m.list = append(m.list[:i], m.list[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("unknown id: %d", id)
}

func TestForwardRoutes(t *testing.T) {
	h := WithForwards(New(Config{Info: testInfo}), &memForwards{}, nil)
	for _, tt := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/v1/forwards", "", 200, `[]`},
		{"POST", "/v1/forwards", `{"proto":"tcp","hostIP":"127.0.0.1","hostPort":5000,"nsPort":5000}`, 201, `{"id":1,"spec":{"proto":"tcp","hostIP":"127.0.0.1","hostPort":5000,"nsPort":5000}}`},
		{"POST", "/v1/forwards", `{"proto":"tcp","hostPath":"/run/db.sock","nsPort":5432}`, 201, `{"id":2,"spec":{"proto":"tcp","hostPath":"/run/db.sock","nsPort":5432}}`},
		{"POST", "/v1/forwards", `{"proto":"tcp","hostIP":"127.0.0.1","hostPort":1,"nsPort":5000}`, 400, `{"message":"conflict with ID 1"}`},
		{"POST", "/v1/forwards", `{"proto":"udp","hostPath":"/x","nsPort":53}`, 400, `TCP port, not udp`},
		{"POST", "/v1/forwards", `{`, 400, `send a forward spec as JSON`},
		{"GET", "/v1/forwards", "", 200, `"id":2`},
		{"DELETE", "/v1/forwards/1", "", 200, ``},
		{"DELETE", "/v1/forwards/1", "", 400, `unknown id: 1`},
		{"DELETE", "/v1/forwards/x", "", 400, `bad id x`},
		{"PUT", "/v1/forwards", "", 405, ``},
		// The RootlessKit routes are still served.
		{"GET", "/v1/info", "", 200, `"apiVersion":"1.1.3"`},
		{"GET", "/v1/ports", "", 400, `no PortDriver is available`},
	} {
		req := httptest.NewRequest(tt.method, "http://rootlesskit"+tt.path, strings.NewReader(tt.body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		b, _ := io.ReadAll(w.Result().Body)
		if w.Code != tt.code || !strings.Contains(string(b), tt.want) {
			t.Errorf("%s %s %s = %d %s; want %d with %q", tt.method, tt.path, tt.body, w.Code, b, tt.code, tt.want)
		}
	}
}
