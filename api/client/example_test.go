package client_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/unroot/unroot/api/client"
	"github.com/unroot/unroot/port"
)

// Publish a port of a running unroot (or rootlesskit) from inside it, where
// ROOTLESSKIT_STATE_DIR is set, and take it down again.
func Example() {
	c, err := client.New(filepath.Join(os.Getenv("ROOTLESSKIT_STATE_DIR"), "api.sock"))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	st, err := c.AddPort(ctx, port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: 8080, ChildPort: 80})
	if err != nil {
		fmt.Println(err) // e.g. "conflict with ID 1 ..." or "unknown proto ..."
		return
	}
	defer c.RemovePort(ctx, st.ID)
	ports, _ := c.ListPorts(ctx)
	fmt.Println(len(ports), "ports published")
}
