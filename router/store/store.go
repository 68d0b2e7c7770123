// Package store keeps the deploy state (router.State) durably: a commit returns only once the
// new state would survive a crash, and compares the stored revision first so two writers cannot
// both win. Bolt is the embedded default; Memory is for tests. An etcd implementation for many
// replicas fits the same interface: Commit is a compare-and-swap on one revision number.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/llmgate/llmgate/router"
)

// ErrEmpty is returned by Load when nothing was ever committed: the caller seeds from config.
var ErrEmpty = errors.New("store: no state committed yet")

// ErrNotFound is returned when a requested past revision is not stored.
var ErrNotFound = errors.New("store: revision not found")

// Store keeps the latest deploy state. Implementations are safe for concurrent use.
type Store interface {
	// Load returns the latest committed state, or ErrEmpty.
	Load(ctx context.Context) (*router.State, error)
	// Commit stores s as the latest state if the latest stored revision is expected (0 when the
	// store is empty), and returns only once s is durable. Another stored revision fails with an
	// error wrapping router.ErrConflict and stores nothing. s.Revision must exceed expected.
	Commit(ctx context.Context, expected uint64, s *router.State) error
	// Close releases the store; it must not be used after.
	Close() error
}

// Interface guards.
var (
	_ Store = (*Bolt)(nil)
	_ Store = (*Memory)(nil)
)

// formatVersion is the envelope version of a stored document. A newer binary may add fields;
// an older one refuses a newer format rather than drop what it does not know on its next commit.
const formatVersion = 1

type envelope struct {
	Format int           `json:"format"`
	State  *router.State `json:"state"`
}

func encode(s *router.State) ([]byte, error) {
	return json.Marshal(envelope{Format: formatVersion, State: s})
}

func decode(data []byte) (*router.State, error) {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("store: decoding state: %w", err)
	}
	switch {
	case e.Format > formatVersion:
		return nil, fmt.Errorf("store: state format %d is newer than this llmgate reads (%d): run the llmgate that wrote it, or a newer one", e.Format, formatVersion)
	case e.Format != formatVersion:
		return nil, fmt.Errorf("store: unknown state format %d", e.Format)
	case e.State == nil:
		return nil, errors.New("store: a state document without its state")
	}
	return e.State, nil
}

// checkCommit validates Commit's arguments, the same for every implementation.
func checkCommit(ctx context.Context, expected uint64, s *router.State) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s == nil {
		return errors.New("store: commit of a nil state")
	}
	if s.Revision <= expected {
		return fmt.Errorf("store: commit of revision %d over expected %d; revisions only grow", s.Revision, expected)
	}
	return nil
}

func conflict(stored, expected uint64) error {
	return fmt.Errorf("%w: store is at revision %d, not %d", router.ErrConflict, stored, expected)
}
