package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/llmgate/llmgate/router"
)

// revisionsBucket maps an 8-byte big-endian revision to that revision's encoded state, so
// keys sort by revision and the latest is the last key.
var revisionsBucket = []byte("revisions")

// lockTimeout bounds the wait for bbolt's file lock: a second gateway on the same file fails
// to start instead of hanging. A variable so a test need not wait as long.
var lockTimeout = 2 * time.Second

// Bolt is the embedded Store: one bbolt file holding the latest committed revisions. bbolt fsyncs
// each write transaction before Update returns, so a Commit that returned survives kill -9 and
// power loss; a crash mid-commit leaves the previous revision.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens or creates the store file at path (its directory must exist). A damaged file
// is an error here, not a panic of bbolt's later.
func OpenBolt(path string) (b *Bolt, err error) {
	defer func() {
		// bbolt panics on some damaged pages it meets while opening ("assertion failed: ...").
		if r := recover(); r != nil {
			b, err = nil, damaged(path, fmt.Errorf("%v", r))
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is locked by another process (is another llmgate running with this state.path?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	if err := check(db); err != nil {
		db.Close()
		return nil, damaged(path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(revisionsBucket)
		return err
	})
	if err == nil {
		// bbolt syncs the file, not the directory entry that names a new file.
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: initialising %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// check runs bbolt's consistency check over the whole file: bbolt does not checksum its data
// pages, and panics when a read or a commit first meets a damaged one, which would crash the
// start with a stack trace, or a serving gateway at its next change. The file holds the latest
// keptRevisions documents, so reading it all at start costs little.
func check(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the checker sends every error it finds
			if first == nil {
				first = err
			}
		}
		return first
	})
}

func damaged(path string, err error) error {
	return fmt.Errorf("store: %s is damaged (%v): restore it from a backup, or move it away to start over from the config file, which loses the deploy history", path, err)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Load returns the latest state, or ErrEmpty.
func (b *Bolt) Load(ctx context.Context) (*router.State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var s *router.State
	err := b.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(revisionsBucket).Cursor().Last()
		if k == nil {
			return ErrEmpty
		}
		var err error
		if s, err = decode(v); err != nil { // decode copies: v is valid only inside the transaction
			// The start-up error: say which file and revision, for the operator to find.
			return fmt.Errorf("%s revision %d: %w", b.db.Path(), latest(tx.Bucket(revisionsBucket)), err)
		}
		return nil
	})
	return s, err
}

// Commit stores s if the latest revision is expected, and returns after bbolt's fsync.
func (b *Bolt) Commit(ctx context.Context, expected uint64, s *router.State) error {
	if err := checkCommit(ctx, expected, s); err != nil {
		return err
	}
	data, err := encode(s)
	if err != nil {
		return err
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(revisionsBucket)
		if cur := latest(bk); cur != expected {
			return conflict(cur, expected)
		}
		if err := bk.Put(revKey(s.Revision), data); err != nil {
			return err
		}
		return prune(bk, s.Revision)
	})
}

// keptRevisions is how many of the latest revisions the file keeps. Each is the whole state,
// history included (up to 1,000 entries per alias), so keeping all of them grew the file
// without bound: 1.8 GB after 7,400 changes, each fsyncing 400 KB. The history inside the
// latest state is the record; older documents only serve Revision.
const keptRevisions = 64

// prune deletes the revisions before the keptRevisions latest, latest being the newest; in
// the same transaction as the commit, so a crash leaves both or neither. bbolt reuses the
// pages they held.
func prune(bk *bolt.Bucket, latest uint64) error {
	if latest <= keptRevisions {
		return nil
	}
	oldest := revKey(latest - keptRevisions + 1)
	c := bk.Cursor()
	for k, _ := c.First(); k != nil && string(k) < string(oldest); k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Revision returns the state committed at rev, or ErrNotFound: the history behind the latest.
func (b *Bolt) Revision(ctx context.Context, rev uint64) (*router.State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var s *router.State
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(revisionsBucket).Get(revKey(rev))
		if v == nil {
			return ErrNotFound
		}
		var err error
		s, err = decode(v)
		return err
	})
	return s, err
}

// Revisions returns every stored revision, ascending.
func (b *Bolt) Revisions(ctx context.Context) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var revs []uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(revisionsBucket).ForEach(func(k, _ []byte) error {
			if len(k) != 8 {
				return errors.New("store: malformed revision key")
			}
			revs = append(revs, binary.BigEndian.Uint64(k))
			return nil
		})
	})
	return revs, err
}

// Close closes the file and releases its lock.
func (b *Bolt) Close() error { return b.db.Close() }

func latest(bk *bolt.Bucket) uint64 {
	k, _ := bk.Cursor().Last()
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

func revKey(rev uint64) []byte { return binary.BigEndian.AppendUint64(nil, rev) }
