package unroot

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/unroot/unroot/internal/apiserver"
)

// apiServer serves the RootlessKit REST API on STATE/api.sock, to
// processes of our own uid and root, as RootlessKit does (apiserver.Listen
// checks SO_PEERCRED; root inside the namespace is our uid as seen from
// here); others get 403.
type apiServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
	once sync.Once
}

// serveAPI serves the API on ln. The socket itself is made early, in the
// background, by listenAPI: its few file operations would otherwise be the
// last step before child_pid.
func (l *Launcher) serveAPI(ln net.Listener) (*apiServer, error) {
	h := apiserver.New(apiserver.Config{Info: l.Info, Ports: l.portDrv, Logger: l.log})
	if l.fwd != nil {
		h = apiserver.WithForwards(h, l.fwd, l.log)
	}
	s := &apiServer{
		srv:  apiserver.NewHTTPServer(h, l.log),
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// apiListener is a listener being made in the background.
type apiListener struct {
	done chan struct{}
	ln   net.Listener
	err  error
}

// listenAPI starts making the socket at path. The goroutine ends once the
// socket exists or failed; take or close collects it.
func (l *Launcher) listenAPI(path string) *apiListener {
	a := &apiListener{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.ln, a.err = apiserver.ListenLogged(path, l.log)
	}()
	return a
}

func (a *apiListener) take() (net.Listener, error) {
	<-a.done
	return a.ln, a.err
}

// close closes a listener that was never served.
func (a *apiListener) close() {
	if ln, err := a.take(); err == nil {
		ln.Close()
	}
}

// Close stops serving and waits for the serving goroutine.
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
