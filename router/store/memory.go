package store

import (
	"context"
	"sync"

	"github.com/llmgate/llmgate/router"
)

// Memory is a Store in memory, for tests. It keeps every revision encoded, as Bolt does, so a
// test sees the same round trip and a caller's later changes to a committed State do not leak in.
type Memory struct {
	mu   sync.Mutex
	revs []uint64 // ascending
	docs map[uint64][]byte
}

// NewMemory returns an empty store.
func NewMemory() *Memory { return &Memory{docs: map[uint64][]byte{}} }

// Load returns the latest state, or ErrEmpty.
func (m *Memory) Load(ctx context.Context) (*router.State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.revs) == 0 {
		return nil, ErrEmpty
	}
	return decode(m.docs[m.revs[len(m.revs)-1]])
}

// Commit stores s if the latest revision is expected.
func (m *Memory) Commit(ctx context.Context, expected uint64, s *router.State) error {
	if err := checkCommit(ctx, expected, s); err != nil {
		return err
	}
	data, err := encode(s)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.latest(); cur != expected {
		return conflict(cur, expected)
	}
	m.revs = append(m.revs, s.Revision)
	m.docs[s.Revision] = data
	return nil
}

func (m *Memory) latest() uint64 {
	if len(m.revs) == 0 {
		return 0
	}
	return m.revs[len(m.revs)-1]
}

// Revision returns the state committed at rev, or ErrNotFound.
func (m *Memory) Revision(ctx context.Context, rev uint64) (*router.State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.docs[rev]
	if !ok {
		return nil, ErrNotFound
	}
	return decode(data)
}

// Close does nothing.
func (m *Memory) Close() error { return nil }
