package cache

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
)

// ErrLeaderFailed tells a follower that the request it waited on got no cacheable answer: it
// should go to the backend itself.
var ErrLeaderFailed = errors.New("cache: coalesced request failed; send it yourself")

// Group coalesces identical requests in flight: the first to Join a key is the leader and
// calls the backend; the others follow its flight. The zero value is ready; safe for
// concurrent use.
type Group struct {
	mu      sync.Mutex
	flights map[flightKey]*Flight

	leaders, followers, failures atomic.Uint64
}

// Flight is one leader's request as its followers see it: the stream events published so far
// (an append-only log that followers read at their own pace, so a slow follower never blocks
// the leader) and, at the end, the entry or the failure.
// flightKey is a request's key in the cache generation and scope it was looked up in: after a
// version or an alias is deleted, a request to the one deployed again under the same name must
// not follow a request still in flight to the old deployment.
type flightKey struct {
	key   Key
	gen   generation
	scope *Scope // an alias deleted and deployed again starts its generations over
}

type Flight struct {
	g         *Group
	key       flightKey
	kind      Kind
	n         int          // choices asked for
	followers atomic.Int32 // requests that joined it
	// saveWanted: a follower whose answer may be stored joined (see WantSaved).
	saveWanted atomic.Bool

	mu    sync.Mutex
	data  []byte // published payloads, back to back
	ends  []int  // end of each payload in data
	done  bool
	entry *Entry
	// answer is what Wait assembled from the events of a stream that ended well but was not
	// stored; answered says it tried.
	answer   *Entry
	answered bool
	wake     chan struct{} // closed at the next Publish or end; nil while nobody waits
}

// Join returns the flight for req, which Store.Get has looked up (its key, in the cache
// generation of that lookup), and whether the caller leads it. A leader must end the flight
// with Finish or Fail exactly once (defer Fail: after Finish it does nothing); a follower uses
// Wait (buffered) or Follow (streams).
func (g *Group) Join(req *Request) (*Flight, bool) {
	key := flightKey{req.Key, req.gen, req.scope}
	g.mu.Lock()
	if f := g.flights[key]; f != nil {
		f.followers.Add(1)
		g.mu.Unlock()
		g.followers.Add(1)
		return f, false
	}
	if g.flights == nil {
		g.flights = map[flightKey]*Flight{}
	}
	f := &Flight{g: g, key: key, kind: req.Kind, n: req.Choices()}
	g.flights[key] = f
	g.mu.Unlock()
	g.leaders.Add(1)
	return f, true
}

// GroupStats are a group's counters.
type GroupStats struct {
	Leaders   uint64 `json:"leaders"`   // requests that went to the backend for their flight
	Followers uint64 `json:"followers"` // requests that joined a flight instead (x-llmgate-cache: coalesced)
	Failures  uint64 `json:"failures"`  // flights whose leader failed while followed, releasing its followers
	InFlight  int    `json:"in_flight"`
}

// Stats returns the group's counters.
func (g *Group) Stats() GroupStats {
	g.mu.Lock()
	n := len(g.flights)
	g.mu.Unlock()
	return GroupStats{g.leaders.Load(), g.followers.Load(), g.failures.Load(), n}
}

// Publish appends one stream event payload (the bytes after "data: ", "[DONE]" included) for
// the followers; the leader calls it as it forwards each event. It copies payload and never
// waits for a follower.
func (f *Flight) Publish(payload []byte) {
	f.mu.Lock()
	// Appending never moves bytes a follower may be reading: they lie before len(f.data),
	// in this array or an older one that stays as it is.
	f.data = append(f.data, payload...)
	f.ends = append(f.ends, len(f.data))
	f.wakeLocked()
	f.mu.Unlock()
}

// Followed reports whether any request joined the flight. A leader whose own client goes away
// still owes followers the rest of the answer.
func (f *Flight) Followed() bool { return f.followers.Load() > 0 }

// WantSaved notes that a follower whose answer may be stored joined the flight. The leader's
// request may forbid storing its own (Cache-Control: no-store), but the answer is the
// follower's too: the leader stores it as the follower would have had it gone first.
func (f *Flight) WantSaved() { f.saveWanted.Store(true) }

// SaveWanted reports whether a follower whose answer may be stored joined (see WantSaved).
func (f *Flight) SaveWanted() bool { return f.saveWanted.Load() }

// EndUnfollowed ends the flight as Fail does if no request has joined it, and reports whether
// it did: atomically with Join, so a request that joins after it leads a flight of its own
// instead of waiting on an answer the leader will not make. A leader that has no use for its
// answer but to share it calls it; when it reports false, followers wait for the answer.
func (f *Flight) EndUnfollowed() bool {
	f.g.mu.Lock()
	if f.followers.Load() > 0 {
		f.g.mu.Unlock()
		return false
	}
	if f.g.flights[f.key] == f {
		delete(f.g.flights, f.key)
	}
	f.g.mu.Unlock()
	f.end(nil)
	return true
}

// Finish ends the flight with the leader's answer. e is nil when the answer was complete but
// not cacheable: stream followers have had every event, buffered followers get the answer
// assembled from them (see Wait). Later calls do nothing.
func (f *Flight) Finish(e *Entry) { f.end(e) }

// Fail ends the flight without an answer: followers get ErrLeaderFailed (stream followers
// after the events already published). Later calls, and a call after Finish, do nothing.
func (f *Flight) Fail() { f.end(nil) }

func (f *Flight) end(e *Entry) {
	f.mu.Lock()
	if f.done {
		f.mu.Unlock()
		return
	}
	f.done, f.entry = true, e
	f.wakeLocked()
	f.mu.Unlock()
	if e == nil && f.Followed() { // a flight nobody joined released no one
		f.g.failures.Add(1)
	}
	// New requests now find the store (or lead a new flight) instead of this one.
	f.g.mu.Lock()
	if f.g.flights[f.key] == f {
		delete(f.g.flights, f.key)
	}
	f.g.mu.Unlock()
}

func (f *Flight) wakeLocked() {
	if f.wake != nil {
		close(f.wake)
		f.wake = nil
	}
}

// waitLocked returns a channel closed at the next change.
func (f *Flight) waitLocked() chan struct{} {
	if f.wake == nil {
		f.wake = make(chan struct{})
	}
	return f.wake
}

// Wait blocks until the leader ends the flight and returns its entry, ErrLeaderFailed, or
// ctx's error. A stream that ended well but that the leader could not store (too large to
// record, cut short by the backend's filter) is still an answer: Wait assembles it from the
// events, once per flight, as stream followers receive it, rather than send every buffered
// follower to the backend. That entry is for replaying only, never for the store.
func (f *Flight) Wait(ctx context.Context) (*Entry, error) {
	for {
		f.mu.Lock()
		if f.done {
			e := f.entry
			if e == nil {
				e = f.answerLocked()
			}
			f.mu.Unlock()
			if e == nil {
				return nil, ErrLeaderFailed
			}
			return e, nil
		}
		ch := f.waitLocked()
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// answerLocked returns the answer assembled from a finished flight's events, nil when they
// are no whole answer (a buffered leader, a failed stream). f.mu is held.
func (f *Flight) answerLocked() *Entry {
	if !f.answered && f.sawDone() {
		r := AcquireRecorder(f.kind, f.n, 0)
		start := 0
		for _, end := range f.ends {
			_ = r.Add(f.data[start:end]) // an error is remembered: Answer then fails
			start = end
		}
		if e, err := r.Answer(); err == nil {
			f.answer = e
		}
		ReleaseRecorder(r)
	}
	f.answered = true
	return f.answer
}

// Follower reads a flight's stream events from the start, at its own pace. Not safe for
// concurrent use.
type Follower struct {
	f       *Flight
	next    int
	id      []byte
	created int64
	buf     []byte
}

// Follow returns a reader of f's events that rewrites each chunk's id and created to id and
// created, the follower's own (see AppendID).
func (f *Flight) Follow(id []byte, created int64) *Follower {
	return &Follower{f: f, id: id, created: created}
}

// Next returns the next event payload, valid until the next call. At the end it returns
// io.EOF after a Finish and ErrLeaderFailed after a Fail. A follower whose first Next returns
// io.EOF followed a buffered leader: it replays Entry as a stream instead.
func (fl *Follower) Next(ctx context.Context) ([]byte, error) {
	f := fl.f
	for {
		f.mu.Lock()
		if fl.next < len(f.ends) {
			start := 0
			if fl.next > 0 {
				start = f.ends[fl.next-1]
			}
			ev := f.data[start:f.ends[fl.next]]
			f.mu.Unlock()
			fl.next++
			fl.buf = rewriteChunk(fl.buf[:0], ev, fl.id, fl.created)
			return fl.buf, nil
		}
		if f.done {
			failed := f.entry == nil && !f.sawDone()
			f.mu.Unlock()
			if failed {
				return nil, ErrLeaderFailed
			}
			return nil, io.EOF
		}
		ch := f.waitLocked()
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Entry returns the leader's entry once the flight has finished with one, else nil.
func (fl *Follower) Entry() *Entry {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	return fl.f.entry
}

// Rewind makes the next Next return the flight's first event again: a follower that looked
// ahead before it answered its client reads the stream from its start.
func (fl *Follower) Rewind() { fl.next = 0 }

// Events returns how many events the follower has read.
func (fl *Follower) Events() int { return fl.next }

// sawDone reports whether the last published payload is [DONE]: a stream that completed but
// was not cacheable (Finish(nil)) still ended well for stream followers. f.mu is held.
func (f *Flight) sawDone() bool {
	n := len(f.ends)
	if n == 0 {
		return false
	}
	start := 0
	if n > 1 {
		start = f.ends[n-2]
	}
	return string(f.data[start:f.ends[n-1]]) == "[DONE]"
}

// rewriteChunk appends the chunk ev with its top-level id and created replaced, and without the
// members the cache key leaves out (user, metadata, request_id, ...; see isExcluded) that the
// backend echoed: they are the leader's own, and a follower must not get another requester's,
// as a replay from the cache does not (see NewEntry). What is not a JSON object ([DONE]) is
// appended as it is.
func rewriteChunk(dst, ev, id []byte, created int64) []byte {
	start, prev := len(dst), 0
	_, err := eachMember(ev, skipWS(ev, 0), func(ks, ke, vs, ve int) error {
		switch k := ev[ks:ke]; {
		case keyIs(k, "id") && ev[vs] == '"':
			dst = append(append(append(append(dst, ev[prev:vs]...), '"'), id...), '"')
			prev = ve
		case keyIs(k, "created") && ev[vs] >= '0' && ev[vs] <= '9':
			dst = strconv.AppendInt(append(dst, ev[prev:vs]...), created, 10)
			prev = ve
		case isExcluded(k[1:len(k)-1]) && !keyIs(k, "model"):
			// The member goes with the comma before it, or, first in the object, the one
			// after it.
			c := ks - 1
			for c >= prev && ev[c] <= ' ' && whitespace[ev[c]] {
				c--
			}
			if c >= prev && ev[c] == ',' {
				dst = append(dst, ev[prev:c]...)
				prev = ve
				break
			}
			dst = append(dst, ev[prev:ks]...)
			prev = ve
			if j := skipWS(ev, ve); j < len(ev) && ev[j] == ',' {
				prev = skipWS(ev, j+1)
			}
		}
		return nil
	}, 0)
	if err != nil {
		return append(dst[:start], ev...)
	}
	return append(dst, ev[prev:]...)
}
