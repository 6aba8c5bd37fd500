package unroot

import (
	"log/slog"
	"net/http"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/internal/apiserver"
	"github.com/unroot/unroot/port"
)

// Serve the full RootlessKit API (internal/apiserver) on api.sock.
func init() {
	newAPIHandler = func(info func() api.Info, ports port.Driver, log *slog.Logger) http.Handler {
		return apiserver.New(apiserver.Config{Info: info, Ports: ports, Logger: log})
	}
}
