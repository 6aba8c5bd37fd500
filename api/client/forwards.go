package client

import (
	"context"
	"net/http"
	"strconv"

	"github.com/unroot/unroot/forward"
)

// ListForwards returns the reverse forwards (unroot's /v1/forwards).
func (c *Client) ListForwards(ctx context.Context) ([]forward.Status, error) {
	var list []forward.Status
	if err := c.do(ctx, http.MethodGet, "/forwards", nil, http.StatusOK, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// AddForward starts forwarding a host service to a port inside and returns
// its status with the new ID.
func (c *Client) AddForward(ctx context.Context, sp forward.Spec) (*forward.Status, error) {
	var st forward.Status
	if err := c.do(ctx, http.MethodPost, "/forwards", sp, http.StatusCreated, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// RemoveForward stops forward id.
func (c *Client) RemoveForward(ctx context.Context, id int) error {
	return c.do(ctx, http.MethodDelete, "/forwards/"+strconv.Itoa(id), nil, http.StatusOK, nil)
}
