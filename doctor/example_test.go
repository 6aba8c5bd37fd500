package doctor_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/unroot/unroot/doctor"
)

// A launcher hands its start error to Explain: when a host check finds the
// cause, the error it gets back leads with that cause and its fix.
func ExampleExplain() {
	start := func(context.Context) error {
		return errors.New("start network driver slirp4netns: open /dev/net/tun: permission denied")
	}
	ctx := context.Background()
	if err := start(ctx); err != nil {
		err = doctor.Explain(ctx, err, doctor.Options{Net: "slirp4netns"})
		fmt.Fprintln(os.Stderr, "unroot:", err)
	}
}

type tmpfsCheck struct{}

func (tmpfsCheck) Name() string { return "tmp-writable" }

func (tmpfsCheck) Run(context.Context) doctor.Result {
	if err := os.WriteFile(os.TempDir()+"/.doctor-probe", nil, 0o600); err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: err.Error(), Fix: "sudo chmod 1777 " + os.TempDir()}
	}
	os.Remove(os.TempDir() + "/.doctor-probe")
	return doctor.Result{Status: doctor.OK, Detail: os.TempDir() + " is writable"}
}

// Embedders can run their own checks next to the built-in ones.
func ExampleRun() {
	res := doctor.Run(context.Background(), tmpfsCheck{})
	fmt.Println(res[0].Name, res[0].Status, doctor.Blocking(res))
	// Output: tmp-writable ok false
}
