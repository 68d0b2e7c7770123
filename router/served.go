package router

import (
	"sync"
	"sync/atomic"
	"time"
)

// served is whether one server (address and path) still serves one model, shared by every
// table that names the pair, as health is by address. A server that answers "model not found"
// for its version's model (an Ollama whose model was removed, a vLLM restarted under another
// name) is up and passes its health probe, so health never ejects it; it would cost each
// request sent there a round trip. served takes it out of the version's pool for that model
// only: the server's other models (an Ollama serves many) are not touched.
type served struct {
	// missingUntil is a unix-nano time; 0 while the server serves the model. Read lock-free
	// by Pick; written under mu. Once it has passed, requests go to the server again, and the
	// first answer decides: a success clears it, another "not found" takes the server out
	// again for twice as long.
	missingUntil atomic.Int64
	// misses counts consecutive "not found" answers; read lock-free by successes, so the hot
	// path takes no lock while the server serves the model.
	misses atomic.Int32

	mu      sync.Mutex
	removed int // consecutive times taken out, for backoff
}

// serves reports whether the server may be sent the model's requests at now.
func (s *served) serves(now int64) bool {
	until := s.missingUntil.Load()
	return until == 0 || now >= until
}

// found records an answer other than "model not found": the server serves the model.
func (s *served) found() {
	if s.misses.Load() == 0 && s.missingUntil.Load() == 0 {
		return
	}
	s.mu.Lock()
	s.misses.Store(0)
	s.missingUntil.Store(0)
	s.removed = 0
	s.mu.Unlock()
}

// missing records a "model not found" answer and returns for how long the server is now out
// of the version's pool, 0 while fewer than threshold answers in a row said so.
func (s *served) missing(now time.Time, threshold int, base time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	until := s.missingUntil.Load()
	if until != 0 && now.UnixNano() < until {
		return 0 // out already: a request sent before it was taken out
	}
	// Once taken out, its first request after the time ran out decides at once.
	if n := s.misses.Add(1); int(n) < threshold && until == 0 {
		return 0
	}
	s.removed++
	d := base << (s.removed - 1)
	if d > maxEject || d <= 0 {
		d = maxEject
	}
	s.misses.Store(0)
	s.missingUntil.Store(now.Add(d).UnixNano())
	return d
}

// servedKey is the pool's key of one server's model: address, path and served model name.
func servedKey(url, path, model string) string { return url + path + "\x00" + model }

func (p *Pool) served(key string) *served {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.byModel[key]
	if s == nil {
		s = &served{}
		p.byModel[key] = s
	}
	return s
}

// ReportModelMissing records that the held backend answered that it does not serve the
// version's model (404 model not found) and returns for how long it is now out of the pool of
// the versions that ask it for that model; 0 while fewer than health.failure_threshold answers
// in a row said so. Its other models, and its health, are not touched.
func (h Hold) ReportModelMissing() time.Duration {
	if h.b == nil {
		return 0
	}
	return h.b.served.missing(h.b.now(), h.b.threshold, h.b.ejectBase)
}

// ServesModel reports whether the backend is not out of its version's pool for answering that
// it does not serve the model (see Hold.ReportModelMissing).
func (b *Backend) ServesModel() bool { return b.served.serves(b.now().UnixNano()) }
