package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCoalesce100 sends 100 identical requests at once through the pipeline's stage 5 and 8
// calls: the counting backend must see one, and every request gets its answer.
func TestCoalesce100(t *testing.T) {
	st := newStore(t, 1<<20)
	var g Group
	scope := st.Scope("chat", "v1")
	orig := fixture(t, "vllm_chat.json")
	var calls atomic.Int32
	release := make(chan struct{})
	backend := func() []byte {
		<-release // hold the leader until every request has joined
		calls.Add(1)
		return orig
	}
	const n = 100
	var joined, done sync.WaitGroup
	joined.Add(n)
	done.Add(n)
	results := make([][]byte, n)
	shapes := make([]string, n)
	for i := range n {
		go func() {
			defer done.Done()
			var req Request
			_ = Prepare(&req, KindChat, "chat", "v1", []byte(`{"messages":[{"role":"user","content":"hi"}],"temperature":0}`))
			if e, ok := st.Get(scope, &req); ok {
				joined.Done()
				results[i], shapes[i] = e.AppendJSON(nil, AppendID(nil, KindChat), 1), "hit"
				return
			}
			f, leader := g.Join(&req)
			joined.Done()
			if leader {
				defer f.Fail() // a panic or early return must release the followers
				body := backend()
				e, err := NewEntry(KindChat, body, req.N)
				if err != nil {
					t.Error(err)
					return
				}
				st.Set(scope, &req, e, time.Minute)
				f.Finish(e)
				results[i], shapes[i] = body, "miss"
				return
			}
			e, err := f.Wait(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			results[i], shapes[i] = e.AppendJSON(nil, AppendID(nil, KindChat), 1), "coalesced"
		}()
	}
	joined.Wait()
	close(release)
	done.Wait()
	if c := calls.Load(); c != 1 {
		t.Fatalf("backend saw %d requests, want 1", c)
	}
	want := viewOfChat(parseChat(t, orig))
	count := map[string]int{}
	for i := range n {
		count[shapes[i]]++
		sameView(t, shapes[i], viewOfChat(parseChat(t, results[i])), want)
	}
	if count["miss"] != 1 || count["coalesced"] != n-1 {
		t.Fatalf("shapes %v", count)
	}
	if gs := g.Stats(); gs.Leaders != 1 || gs.Followers != n-1 || gs.InFlight != 0 {
		t.Fatalf("group stats %+v", gs)
	}
}

// TestCoalesceStream: followers receive the leader's events as they are published, a
// follower that does not read never holds the leader up, and a buffered follower gets the
// entry the leader recorded.
func TestCoalesceStream(t *testing.T) {
	var g Group
	key := Key{1}
	f, leader := g.Join(&Request{Key: key})
	if !leader {
		t.Fatal("first Join is not the leader")
	}
	live, _ := g.Join(&Request{Key: key})
	slow, _ := g.Join(&Request{Key: key})
	buffered, _ := g.Join(&Request{Key: key})
	events := payloads(t, fixture(t, "vllm_chat_stream_usage.txt"))

	// The live follower acknowledges each event before the leader publishes the next, which
	// proves delivery as events arrive rather than at the end.
	ack := make(chan []byte)
	liveErr := make(chan error, 1)
	go func() {
		fl := live.Follow([]byte("chatcmpl-live"), 5)
		for {
			ev, err := fl.Next(context.Background())
			if err != nil {
				liveErr <- err
				return
			}
			ack <- append([]byte(nil), ev...)
		}
	}()
	bufDone := make(chan *Entry, 1)
	go func() {
		e, err := buffered.Wait(context.Background())
		if err != nil {
			t.Error(err)
		}
		bufDone <- e
	}()

	rec := AcquireRecorder(KindChat, 1, 0)
	defer ReleaseRecorder(rec)
	for _, ev := range events {
		f.Publish(ev)
		_ = rec.Add(ev)
		got := <-ack
		if want := rewriteChunk(nil, ev, []byte("chatcmpl-live"), 5); !bytes.Equal(got, want) {
			t.Fatalf("live follower got %s, want %s", got, want)
		}
	}
	e, err := rec.Entry()
	if err != nil {
		t.Fatal(err)
	}
	f.Finish(e) // the slow follower has read nothing: the leader finished regardless
	if err := <-liveErr; !errors.Is(err, io.EOF) {
		t.Fatalf("live follower ended with %v", err)
	}
	if got := <-bufDone; got != e {
		t.Fatal("buffered follower did not get the recorded entry")
	}

	fl := slow.Follow([]byte("chatcmpl-slow"), 6)
	var got [][]byte
	for {
		ev, err := fl.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, append([]byte(nil), ev...))
	}
	if len(got) != len(events) {
		t.Fatalf("slow follower got %d events, want %d", len(got), len(events))
	}
	for i := range got {
		if want := rewriteChunk(nil, events[i], []byte("chatcmpl-slow"), 6); !bytes.Equal(got[i], want) {
			t.Fatalf("event %d: %s, want %s", i, got[i], want)
		}
	}
	if bytes.Contains(got[0], []byte("chatcmpl-4be1")) || !bytes.Contains(got[0], []byte(`"id":"chatcmpl-slow"`)) || !bytes.Contains(got[0], []byte(`"created":6`)) {
		t.Fatalf("id not rewritten: %s", got[0])
	}
	if nf, leader := g.Join(&Request{Key: key}); !leader || nf == f {
		t.Fatal("a finished flight was joined")
	}
}

func TestCoalesceLeaderFailure(t *testing.T) {
	var g Group
	f, _ := g.Join(&Request{Key: Key{2}})
	w, _ := g.Join(&Request{Key: Key{2}})
	s, _ := g.Join(&Request{Key: Key{2}})
	f.Publish([]byte(`{"id":"a","choices":[]}`))
	f.Fail()
	f.Finish(nil) // after Fail: nothing
	if _, err := w.Wait(context.Background()); !errors.Is(err, ErrLeaderFailed) {
		t.Fatalf("buffered follower: %v", err)
	}
	fl := s.Follow([]byte("b"), 1)
	if ev, err := fl.Next(context.Background()); err != nil || !bytes.Contains(ev, []byte(`"id":"b"`)) {
		t.Fatalf("published event: %s %v", ev, err)
	}
	if _, err := fl.Next(context.Background()); !errors.Is(err, ErrLeaderFailed) {
		t.Fatalf("stream follower: %v", err)
	}
	// Released followers go on their own: the next Join leads.
	if _, leader := g.Join(&Request{Key: Key{2}}); !leader {
		t.Fatal("failed flight still joinable")
	}
	if g.Stats().Failures != 1 {
		t.Fatalf("stats %+v", g.Stats())
	}
}

func TestCoalesceBufferedLeaderStreamFollower(t *testing.T) {
	var g Group
	f, _ := g.Join(&Request{Key: Key{3}})
	s, _ := g.Join(&Request{Key: Key{3}})
	e := answer(t, "whole")
	f.Finish(e)
	fl := s.Follow([]byte("c"), 1)
	if _, err := fl.Next(context.Background()); !errors.Is(err, io.EOF) || fl.Events() != 0 || fl.Entry() != e {
		t.Fatalf("got %v, %d events", err, fl.Events())
	}
}

func TestCoalesceContext(t *testing.T) {
	var g Group
	g.Join(&Request{Key: Key{4}})
	w, _ := g.Join(&Request{Key: Key{4}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait: %v", err)
	}
	if _, err := w.Follow(nil, 0).Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next: %v", err)
	}
}

// A version deleted and deployed again under the same name starts a new cache generation: a
// request to it leads its own flight instead of following one still in flight to the old
// deployment, whose answer is not the new deployment's.
func TestCoalesceNotAcrossRedeploy(t *testing.T) {
	st := newStore(t, 1<<20)
	var g Group
	body := []byte(`{"messages":[{"role":"user","content":"hi"}],"temperature":0}`)
	join := func() (*Flight, bool) {
		var req Request
		if err := Prepare(&req, KindChat, "chat", "v5", body); err != nil {
			t.Fatal(err)
		}
		if _, ok := st.Get(st.Scope("chat", "v5"), &req); ok {
			t.Fatal("unexpected hit")
		}
		return g.Join(&req)
	}
	old, leader := join()
	if !leader {
		t.Fatal("the first request does not lead")
	}
	defer old.Fail()
	if f, leader := join(); leader || f != old {
		t.Fatal("the same request to the same deployment does not follow the flight")
	}
	st.DeleteVersion("chat", "v5")
	f, leader := join()
	defer f.Fail()
	if !leader || f == old {
		t.Fatal("a request after the version was deleted and deployed again follows the old deployment's flight")
	}
}

// EndUnfollowed ends a flight nobody joined, atomically with Join: the next request leads a new
// flight instead of waiting on an answer the leader will not make; once a request has joined,
// the flight goes on for it.
func TestCoalesceEndUnfollowed(t *testing.T) {
	var g Group
	f, _ := g.Join(&Request{Key: Key{6}})
	if !f.EndUnfollowed() {
		t.Fatal("a flight nobody joined was not ended")
	}
	nf, leader := g.Join(&Request{Key: Key{6}})
	if !leader || nf == f {
		t.Fatal("a request after EndUnfollowed joined the ended flight")
	}
	w, _ := g.Join(&Request{Key: Key{6}})
	if nf.EndUnfollowed() {
		t.Fatal("a followed flight was ended")
	}
	e := answer(t, "for the follower")
	nf.Finish(e)
	if got, err := w.Wait(context.Background()); err != nil || got != e {
		t.Fatalf("follower got %v, %v", got, err)
	}
	if s := g.Stats(); s.Failures != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A follower's chunks carry its own id and created, and not the leader's members that a
// backend echoed (user, metadata, ...), wherever they stand in the chunk.
func TestRewriteChunk(t *testing.T) {
	const choices = `"choices":[{"index":0,"delta":{"content":"hi"}}]`
	tests := []struct{ name, in, want string }{
		{"id and created", `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",` + choices + `}`,
			`{"id":"mine","object":"chat.completion.chunk","created":7,"model":"m",` + choices + `}`},
		{"created first", `{"created":1,"id":"c1",` + choices + `}`, `{"created":7,"id":"mine",` + choices + `}`},
		{"echo first", `{"user":"alice","id":"c1",` + choices + `}`, `{"id":"mine",` + choices + `}`},
		{"echo between", `{"id":"c1", "metadata" : {"t":"alice"} ,"created":1,` + choices + `}`, `{"id":"mine" ,"created":7,` + choices + `}`},
		{"echo last", `{"id":"c1",` + choices + `,"user":"alice","request_id":"r-alice"}`, `{"id":"mine",` + choices + `}`},
		{"echoes first", `{"user":"alice","metadata":{},"id":"c1"}`, `{"id":"mine"}`},
		{"echo only", `{ "user":"alice" }`, `{  }`},
		{"usage chunk", `{"id":"c1","choices":[],"usage":{"prompt_tokens":1}}`, `{"id":"mine","choices":[],"usage":{"prompt_tokens":1}}`},
		{"done", `[DONE]`, `[DONE]`},
		{"not JSON", `{"id":"c1",`, `{"id":"c1",`},
	}
	for _, tt := range tests {
		got := string(rewriteChunk([]byte("kept"), []byte(tt.in), []byte("mine"), 7))
		if got != "kept"+tt.want {
			t.Errorf("%s:\n got %s\nwant kept%s", tt.name, got, tt.want)
		}
		if json.Valid([]byte(tt.in)) && !json.Valid([]byte(tt.want)) {
			t.Errorf("%s: the chunk is no longer JSON", tt.name)
		}
	}
}

// A stream the leader could not store (cut short by the backend's filter, or too large to
// record) but that ended well is still the answer: buffered followers get it assembled from
// the events, as stream followers do, instead of each calling the backend again. A stream
// that failed still releases them.
func TestCoalesceUnstoredStreamBufferedFollower(t *testing.T) {
	full := string(fixture(t, "vllm_chat_stream_usage.txt"))
	for _, tt := range []struct {
		name, stream, finish string
	}{
		{"content_filter", strings.Replace(full, `"finish_reason":"length"`, `"finish_reason":"content_filter"`, 1), "content_filter"},
		{"not recorded", full, "length"},
		{"failed", strings.Replace(full, "data: [DONE]\n\n", "", 1), ""},
	} {
		var g Group
		req := &Request{Key: Key{8}, Kind: KindChat, N: 1}
		f, _ := g.Join(req)
		w, _ := g.Join(req)
		for _, ev := range payloads(t, []byte(tt.stream)) {
			f.Publish(ev)
		}
		f.Finish(nil)
		e, err := w.Wait(context.Background())
		if tt.finish == "" {
			if !errors.Is(err, ErrLeaderFailed) {
				t.Errorf("%s: buffered follower got %v, want ErrLeaderFailed", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: buffered follower got %v, want the leader's answer", tt.name, err)
		}
		if finish, text := e.First(); string(finish) != tt.finish || !bytes.HasPrefix(text, []byte("The")) {
			t.Errorf("%s: buffered follower got finish %s, text %q", tt.name, finish, text)
		}
		if again, _ := w.Wait(context.Background()); again != e {
			t.Errorf("%s: the answer was assembled again", tt.name)
		}
	}
}
