package testutil

import (
	"strings"
	"sync"
)

// SyncBuffer collects what a logger or a helper process writes while the
// test reads it: a strings.Builder safe for concurrent Write and String.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
