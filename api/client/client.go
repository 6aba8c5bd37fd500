// Package client is a Go client for the RootlessKit-compatible REST API
// that unroot (and RootlessKit) serve on STATE/api.sock.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/port"
)

// Client talks to one api.sock. It is safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// New returns a client for the socket at path. It does not connect.
func New(path string) (*Client, error) {
	if path == "" {
		return nil, errors.New("api client: empty socket path: pass STATE/api.sock")
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{socket: path, hc: &http.Client{Transport: tr}}, nil
}

// Socket is the path the client talks to.
func (c *Client) Socket() string { return c.socket }

// Error is a failed API call: the HTTP status and the server's message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://rootlesskit/v1"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap()
		}
		return fmt.Errorf("connect to %s: %w (is the launcher running with this state directory?)", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read response from %s: %w", c.socket, err)
	}
	if resp.StatusCode != want && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		var ej api.ErrorJSON
		if json.Unmarshal(data, &ej) == nil && ej.Message != "" {
			return &Error{Status: resp.StatusCode, Message: ej.Message}
		}
		msg := strings.TrimSpace(string(data))
		if msg == "" {
			msg = resp.Status
		}
		return &Error{Status: resp.StatusCode, Message: fmt.Sprintf("%s %s: %s", method, path, msg)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s %s response: %w", method, path, err)
	}
	return nil
}

// Info returns GET /v1/info.
func (c *Client) Info(ctx context.Context) (*api.Info, error) {
	var info api.Info
	if err := c.do(ctx, http.MethodGet, "/info", nil, http.StatusOK, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// ListPorts returns the published ports.
func (c *Client) ListPorts(ctx context.Context) ([]port.Status, error) {
	var ports []port.Status
	if err := c.do(ctx, http.MethodGet, "/ports", nil, http.StatusOK, &ports); err != nil {
		return nil, err
	}
	return ports, nil
}

// AddPort publishes a port and returns its status with the new ID.
func (c *Client) AddPort(ctx context.Context, s port.Spec) (*port.Status, error) {
	var st port.Status
	if err := c.do(ctx, http.MethodPost, "/ports", s, http.StatusCreated, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// RemovePort unpublishes port id.
func (c *Client) RemovePort(ctx context.Context, id int) error {
	return c.do(ctx, http.MethodDelete, "/ports/"+strconv.Itoa(id), nil, http.StatusOK, nil)
}
