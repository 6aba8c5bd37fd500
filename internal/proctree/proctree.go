// Package proctree walks a process's descendants through /proc: the
// child's init kills what is left of the command's tree with it, and the
// tests look for helpers that outlive their launcher with it.
package proctree

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Descendants lists the live descendants of pid, breadth first, from
// /proc/PID/task/*/children (a child belongs to the thread that forked it,
// so every thread's list is read). A process that ends during the walk is
// left out or listed, as the race falls.
func Descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out
}
