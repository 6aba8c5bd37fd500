package unroot

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/unroot/unroot/internal/apiserver"
)

// apiServer serves the RootlessKit REST API on STATE/api.sock, to
// processes of our own uid only (apiserver.Listen checks SO_PEERCRED;
// root inside the namespace is our uid as seen from here).
type apiServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
	once sync.Once
}

func (l *Launcher) serveAPI(path string) (*apiServer, error) {
	ln, err := apiserver.ListenLogged(path, l.log)
	if err != nil {
		return nil, err
	}
	h := apiserver.New(apiserver.Config{Info: l.Info, Ports: l.portDrv, Logger: l.log})
	s := &apiServer{
		srv:  &http.Server{Handler: h, ErrorLog: slog.NewLogLogger(l.log.Handler(), slog.LevelDebug)},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
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
