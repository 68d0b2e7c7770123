package load

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	thousand := make([]int, 1000)
	for i := range thousand {
		thousand[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"two p50", ms(1, 2), 0.5, 1 * time.Millisecond},
		{"two p90", ms(1, 2), 0.9, 2 * time.Millisecond},
		{"hundred p50", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"hundred p90", ms(hundred...), 0.9, 90 * time.Millisecond},
		{"hundred p99", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"hundred p99.9", ms(hundred...), 0.999, 100 * time.Millisecond},
		{"hundred max", ms(hundred...), 1, 100 * time.Millisecond},
		{"thousand p99.9", ms(thousand...), 0.999, 999 * time.Millisecond},
		{"ten p99", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	d := []time.Duration{5, 1, 4, 2, 3}
	got := Summarize(d)
	want := Dist{N: 5, Mean: 3, P50: 3, P90: 5, P99: 5, P999: 5, Max: 5}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if m := medianDist([]Dist{{N: 1, P50: 3}, {N: 2, P50: 1}, {N: 3, P50: 2}, {N: 4, P50: 10}}); m.N != 10 || m.P50 != 2 {
		t.Errorf("medianDist: %+v", m)
	}
	// A round where every request failed has no latency; it does not pull the median to 0.
	if m := medianDist([]Dist{{}, {N: 2, P50: 10, P99: 30}, {N: 2, P50: 20, P99: 40}}); m.N != 4 || m.P50 != 15 || m.P99 != 35 {
		t.Errorf("medianDist with an empty round: %+v", m)
	}
	if m := medianDist([]Dist{{}, {}}); m != (Dist{}) {
		t.Errorf("medianDist of empty rounds: %+v", m)
	}
}

// chunkReader returns its chunks one Read at a time.
type chunkReader struct{ chunks []string }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	if n < len(r.chunks[0]) {
		r.chunks[0] = r.chunks[0][n:]
	} else {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

func TestSSERead(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name    string
		chunks  []string
		bufSize int
		want    streamTimes // bytes is filled in from the chunks
		gaps    []time.Duration
	}{{
		// The clock advances 10ms per call, i.e. per read: read k is stamped k*10ms.
		name: "split and coalesced events",
		chunks: []string{
			"data: {\"text\":\"1\"}\n\n",               // read 1: event 1 at 10ms
			"data: {\"text\"",                          // read 2: nothing complete
			":\"2\"}\n\ndata: {\"text\":\"3\"}\n\n",    // read 3: events 2 and 3 at 30ms
			": keep-alive\n\n",                         // read 4: a comment is no event
			"event: x\ndata: {\"text\":\"4\"}\n", "\n", // reads 5, 6: event 4 at 60ms
			"data: [DONE]\n\n", // read 7
		},
		want: streamTimes{first: 10 * ms, output: true, events: 4, done: true},
		gaps: []time.Duration{20 * ms, 0, 30 * ms},
	}, {
		name:   "CRLF and no space after colon",
		chunks: []string{"data:{\"text\":\"1\"}\r\n\r\n", "data:{\"text\":\"2\"}\r\n\r\ndata:[DONE]\r\n\r\n"},
		want:   streamTimes{first: 10 * ms, output: true, events: 2, done: true},
		gaps:   []time.Duration{10 * ms},
	}, {
		name:    "tiny reads split a line many times",
		chunks:  []string{"data: {\"text\":\"1\"}\n\ndata: {\"text\":\"2\"}\n\ndata: [DONE]\n\n"},
		bufSize: 3,
		want:    streamTimes{first: 70 * ms, output: true, events: 2, done: true},
		gaps:    []time.Duration{70 * ms},
	}, {
		name:   "error event",
		chunks: []string{"data: {\"text\":\"1\"}\n\n", "data: {\"error\":{\"message\":\"boom\"}}\n\n"},
		want:   streamTimes{first: 10 * ms, output: true, events: 1, errEvent: true},
	}, {
		name:   "no DONE, last event without blank line",
		chunks: []string{"data: {\"text\":\"1\"}\n\n", "data: {\"text\":\"2\"}"},
		want:   streamTimes{first: 10 * ms, output: true, events: 2},
		gaps:   []time.Duration{20 * ms}, // stamped at EOF, the third clock reading
	}, {
		// TTFT is the first event with output: a gateway that sends the role chunk at once
		// and holds the text back is not faster. The gaps still run between all events.
		name: "role chunk and empty content before the first text",
		chunks: []string{
			`data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null}]}` + "\n\n",
			`data: {"choices":[{"index":0,"delta":{"content":null,"refusal":null,"tool_calls":[]}}]}` + "\n\n",
			`data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}` + "\n\n",
			`data: {"choices":[],"usage":{"completion_tokens":1}}` + "\n\ndata: [DONE]\n\n",
		},
		want: streamTimes{first: 30 * ms, output: true, events: 4, done: true},
		gaps: []time.Duration{10 * ms, 10 * ms, 10 * ms},
	}, {
		name:   "no event with output",
		chunks: []string{`data: {"choices":[{"delta":{"role":"assistant","content":""}}]}` + "\n\n", "data: [DONE]\n\n"},
		want:   streamTimes{events: 1, done: true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var clock time.Duration
			now := func() time.Duration { clock += 10 * time.Millisecond; return clock }
			size := tt.bufSize
			if size == 0 {
				size = 1024
			}
			buf := make([]byte, size)
			var s sseReader
			var gaps []time.Duration
			got, err := s.read(&chunkReader{chunks: append([]string(nil), tt.chunks...)}, buf, now, &gaps)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.bytes = int64(len(strings.Join(tt.chunks, "")))
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
			if len(gaps) != len(tt.gaps) {
				t.Fatalf("gaps %v, want %v", gaps, tt.gaps)
			}
			for i := range gaps {
				if gaps[i] != tt.gaps[i] {
					t.Errorf("gaps %v, want %v", gaps, tt.gaps)
					break
				}
			}
		})
	}
}

// Each kind of output ends the time to first token; the role chunk before it does not.
func TestSSEReadOutputKinds(t *testing.T) {
	const role = `data: {"choices":[{"delta":{"role":"assistant","content":""}}]}` + "\n\n"
	for _, delta := range []string{
		`{"content":"Hi"}`,
		`{"reasoning_content":"Let me think"}`,
		`{"reasoning":"Let me think"}`,
		`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}`,
		`{"refusal":"I can't"}`,
		`{"role": "assistant", "content": "Hi"}`, // whitespace as Python's json.dumps writes it
	} {
		t.Run(delta, func(t *testing.T) {
			var clock time.Duration
			now := func() time.Duration { clock += 10 * time.Millisecond; return clock }
			chunks := []string{role, `data: {"choices":[{"delta":` + delta + "}]}\n\ndata: [DONE]\n\n"}
			var s sseReader
			got, err := s.read(&chunkReader{chunks: chunks}, make([]byte, 1024), now, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !got.output || got.first != 20*time.Millisecond || got.events != 2 {
				t.Errorf("got %+v, want output first at 20ms of 2 events", got)
			}
		})
	}
	// A completion's text counts; empty values and the names as values or in strings do not.
	for _, tt := range []struct {
		data string
		want bool
	}{
		{`{"choices":[{"text":"Paris","index":0}]}`, true},
		{`{"choices":[{"text":"","index":0,"finish_reason":"stop"}]}`, false},
		{`{"delta":{"content":"","tool_calls":[ ]}}`, false},
		{`{"delta":{"content":"","x":"say \"text\": \"hi\""}}`, false}, // a key's name in a string
		{`{"delta":{"type":"text","content":null}}`, false},
		{`{"choices":[],"usage":{"prompt_tokens":28}}`, false},
	} {
		if got := carriesOutput([]byte(tt.data)); got != tt.want {
			t.Errorf("carriesOutput(%s) = %v, want %v", tt.data, got, tt.want)
		}
	}
}

func TestReadProc(t *testing.T) {
	pid := os.Getpid()
	// Burn CPU until the kernel has charged at least one tick, so the reading is not 0.
	deadline := time.Now().Add(2 * time.Second)
	var cpu time.Duration
	var name string
	var rss int64
	for x := 1.0; time.Now().Before(deadline); x = x*1.0000001 + 1 {
		var err error
		if name, cpu, rss, err = ReadProc(pid); err != nil {
			t.Fatal(err)
		}
		if cpu > 0 {
			break
		}
	}
	if name == "" || cpu <= 0 || rss < 1<<20 {
		t.Errorf("name %q, cpu %v, peak RSS %d", name, cpu, rss)
	}
	before := sampleProcs([]int{pid}, true)
	after := sampleProcs([]int{pid}, false)
	st := procDelta(before, after)
	if len(st) != 1 || st[0].Err != "" || st[0].CPU < 0 || st[0].PeakRSS <= 0 || st[0].PID != pid {
		t.Errorf("procDelta: %+v", st)
	}
	if _, _, _, err := ReadProc(1 << 30); err == nil {
		t.Error("ReadProc of a missing pid: want an error")
	}
	// A pid whose process exited and was reused by another during the window is not read as
	// one process (its CPU would be the difference of two processes').
	reused := []procSample{{pid: pid, name: "bash", cpu: 10 * clockTick, start: before[0].start + 1, rss: 1 << 20}}
	if st := procDelta(before, reused); st[0].Err == "" || !strings.Contains(st[0].Err, "exited") {
		t.Errorf("procDelta across a reused pid: %+v", st)
	}
}

// With --repeat-share 1 every request repeats the first: a run of cache hits only.
func TestWorkloadAllRepeats(t *testing.T) {
	o := testOptions()
	o.RepeatShare = 1
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	first := w.Body(nil, w.Key(0), 0)
	for i := range uint64(100000) {
		if b := w.Body(nil, w.Key(i), 0); !bytes.Equal(b, first) {
			t.Fatalf("request %d has a body of its own: %.80s", i, b)
		}
	}
}

func TestWorkload(t *testing.T) {
	o := testOptions()
	o.PromptMix = []int{200, 1024, 4096}
	o.PIIShare = 0.1
	o.RepeatShare = 0.2
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	repeats, pii := 0, 0
	sizes := map[int]int{}
	bodies := map[string]uint64{}
	for i := range uint64(n) {
		k := w.Key(i)
		if k > i {
			t.Fatalf("key %d of request %d is in the future", k, i)
		}
		if k != i {
			repeats++
		}
		b := w.Body(nil, k, 0)
		if prev, ok := bodies[string(b)]; ok && prev != k {
			t.Fatalf("keys %d and %d share a body", prev, k)
		}
		bodies[string(b)] = k
		if i%10 == 0 { // decoding is the slow part; a sample shows the sizes
			var v struct {
				Model    string
				Messages []struct{ Role, Content string }
			}
			if err := json.Unmarshal(b, &v); err != nil || v.Model != "chat" || len(v.Messages) != 1 {
				t.Fatalf("body %d: %v: %.100s", i, err, b)
			}
			sizes[len(v.Messages[0].Content)]++
		}
		if bytes.Contains(b, []byte("example.com")) || bytes.Contains(b, []byte("555-0132")) || bytes.Contains(b, []byte("4111 1111")) {
			pii++
		}
		if !bytes.Equal(b, w.Body(nil, k, 0)) {
			t.Fatal("Body is not deterministic")
		}
	}
	if f := float64(repeats) / n; f < 0.18 || f > 0.22 {
		t.Errorf("repeat share %.3f, want ~0.2", f)
	}
	if f := float64(pii) / n; f < 0.08 || f > 0.12 {
		t.Errorf("PII share %.3f, want ~0.1", f)
	}
	for _, size := range o.PromptMix {
		if f := float64(sizes[size]) / (n / 10); f < 0.27 || f > 0.40 {
			t.Errorf("size %d share %.3f (sizes %v)", size, f, sizes)
		}
	}
}

// The smallest prompts Validate accepts come out at the size asked for.
func TestWorkloadSmallestPrompts(t *testing.T) {
	for _, pii := range []float64{0, 1} {
		o := testOptions()
		o.URL = "http://127.0.0.1:1"
		o.PIIShare = pii
		o.PromptBytes = minPromptBytes(pii)
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		w, err := NewWorkload(o)
		if err != nil {
			t.Fatal(err)
		}
		for i := range uint64(16) {
			var v struct{ Messages []struct{ Content string } }
			if err := json.Unmarshal(w.Body(nil, i, 0), &v); err != nil {
				t.Fatal(err)
			}
			if got := len(v.Messages[0].Content); got != o.PromptBytes {
				t.Fatalf("--pii-share %g --prompt-bytes %d: a %d-byte prompt %q", pii, o.PromptBytes, got, v.Messages[0].Content)
			}
		}
		o.PromptBytes--
		if err := o.Validate(); err == nil {
			t.Errorf("--pii-share %g --prompt-bytes %d accepted", pii, o.PromptBytes)
		}
	}
}

func TestPromptsFile(t *testing.T) {
	path := t.TempDir() + "/p.jsonl"
	// A byte order mark, as some editors write, is not part of the first line.
	os.WriteFile(path, []byte("\ufeff"+`{"prompt": "hello <there>"}

{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
[{"role": "user", "content": [{"type": "text", "text": "structured"}]}]
`), 0o644)
	o := testOptions()
	o.PromptsFile = path
	o.Workload = Embeddings
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.tmpls) != 3*w.variants || w.Path != "/v1/embeddings" {
		t.Fatalf("%d templates, path %s", len(w.tmpls), w.Path)
	}
	if b := string(w.tmpls[0].b); !strings.Contains(b, `"input":"Request `) || !strings.Contains(b, "hello <there>") {
		t.Errorf("prompt body %s", b)
	}
	if b := string(w.tmpls[2*w.variants].b); !strings.Contains(b, `"input":"Request `) || !strings.Contains(b, "structured") {
		t.Errorf("structured content body %s", b)
	}
	os.WriteFile(path, []byte("{\"prompt\": 1}\n"), 0o644)
	if _, err := NewWorkload(o); err == nil || !strings.Contains(err.Error(), "p.jsonl:1") {
		t.Errorf("bad line: err %v", err)
	}
}

// A process that could not be read in some rounds (it exited: the gateway crashed) is summed
// up from the rounds that read it, and the table says which rounds it missed; a round without
// a reading is no reading, not 0 CPU.
func TestSummarizeProcsMissingRounds(t *testing.T) {
	ok := func(round int, cpu float64) *Result {
		return &Result{Target: "gw", Round: round, Procs: []ProcStats{{PID: 7, Name: "llmgate", CPUPerRequest: cpu, CoreShare: cpu / 100, PeakRSS: 10 << 20}}}
	}
	gone := func(round int) *Result {
		return &Result{Target: "gw", Round: round, Procs: []ProcStats{{PID: 7, Name: "llmgate", Err: "open /proc/7/stat: no such file or directory"}}}
	}
	tests := []struct {
		name   string
		runs   []*Result
		cpu    float64
		missed int
		table  string // substring of the process line
	}{
		{"read every round", []*Result{ok(1, 100), ok(2, 120), ok(3, 110)}, 110, 0, "gw: process llmgate[7]: 110.0 CPU µs/request"},
		{"exited after round 1", []*Result{ok(1, 100), gone(2), gone(3)}, 100, 2,
			"gw: process llmgate[7]: 100.0 CPU µs/request, 1.00 of a core, peak RSS 10.0 MiB; no reading in 2 of 3 rounds: open /proc/7/stat"},
		{"missing in round 1", []*Result{gone(1), ok(2, 100), ok(3, 120)}, 110, 1, "gw: process llmgate[7]: 110.0 CPU µs/request"},
		{"never read", []*Result{gone(1), gone(2)}, 0, 2, "gw: process llmgate[7]: open /proc/7/stat: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := summarize([]Target{{Name: "gw"}}, tt.runs)
			if len(s[0].Procs) != 1 {
				t.Fatalf("procs %+v", s[0].Procs)
			}
			if p := s[0].Procs[0]; p.CPUPerRequest != tt.cpu || p.Missed != tt.missed {
				t.Errorf("cpu %v, missed %d; want %v, %d", p.CPUPerRequest, p.Missed, tt.cpu, tt.missed)
			}
			var table bytes.Buffer
			WriteTable(&table, &Report{Options: testOptions(), Runs: tt.runs, Summaries: s})
			if !strings.Contains(table.String(), tt.table) {
				t.Errorf("table:\n%s\nwant a line with %q", table.String(), tt.table)
			}
		})
	}
}

// An embeddings run of a prompts file of messages embeds the last user message with the
// nonce and the PII of its variant, like a {"prompt": ...} line: it sent the bare message, so
// every run sent the same bodies (a cache in the target answered the later rounds) and
// --pii-share added no PII.
// The JSON summary has no figure that reads as a measured zero: cpu_ns is the median of the
// rounds' (it was always 0), and the load generator, whose peak RSS is not read, has none (it
// was 0).
func TestSummarizeProcsJSON(t *testing.T) {
	round := func(n int, cpu time.Duration) *Result {
		return &Result{Target: "gw", Round: n,
			Procs:     []ProcStats{{PID: 7, Name: "llmgate", CPU: cpu, PeakRSS: 10 << 20}},
			Generator: &ProcStats{PID: 8, Name: "load generator", CPU: 2 * cpu}}
	}
	s := summarize([]Target{{Name: "gw"}}, []*Result{round(1, 3*time.Second), round(2, time.Second), round(3, 2*time.Second)})
	b, err := json.Marshal(s[0])
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Procs     []map[string]any `json:"procs"`
		Generator map[string]any   `json:"load_generator"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Procs) != 1 || got.Procs[0]["cpu_ns"] != float64(2e9) || got.Procs[0]["peak_rss_bytes"] != float64(10<<20) {
		t.Errorf("procs %v, want cpu_ns 2e9 (the median) and peak_rss_bytes %d", got.Procs, 10<<20)
	}
	if got.Generator["cpu_ns"] != float64(4e9) {
		t.Errorf("load generator %v, want cpu_ns 4e9 (the median)", got.Generator)
	}
	if rss, ok := got.Generator["peak_rss_bytes"]; ok {
		t.Errorf("load generator has peak_rss_bytes %v; it is not measured", rss)
	}
}

func TestPromptsFileMessagesEmbeddings(t *testing.T) {
	path := t.TempDir() + "/p.jsonl"
	os.WriteFile(path, []byte(`{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]}`+"\n"), 0o644)
	o := testOptions()
	o.PromptsFile, o.Workload, o.PIIShare = path, Embeddings, 1
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	a, b := w.Body(nil, 1, 1), w.Body(nil, 1, 2)
	if bytes.Equal(a, b) {
		t.Errorf("two runs sent the same body %s", a)
	}
	var v struct{ Input string }
	if err := json.Unmarshal(a, &v); err != nil || !strings.HasPrefix(v.Input, "Request ") || !strings.HasSuffix(v.Input, "hi there") {
		t.Errorf("input %q (%v)", v.Input, err)
	}
	if !strings.Contains(v.Input, "example.com") && !strings.Contains(v.Input, "555-0132") && !strings.Contains(v.Input, "4111 1111") {
		t.Errorf("--pii-share 1, but no PII in %q", v.Input)
	}
}

// A prompts file of content arrays (the OpenAI parts format) gets the nonce and the PII in its
// first text part: its bodies were the same for every request of a line, so a cache in the
// target answered all but the first, with --repeat-share 0, and --pii-share added nothing.
func TestPromptsFileContentParts(t *testing.T) {
	path := t.TempDir() + "/p.jsonl"
	os.WriteFile(path, []byte(`{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}, {"type": "text", "text": "what is this"}]}]}`+"\n"), 0o644)
	o := testOptions()
	o.PromptsFile, o.PIIShare = path, 1
	w, err := NewWorkload(o)
	if err != nil {
		t.Fatal(err)
	}
	a, b := w.Body(nil, 1, 1), w.Body(nil, 2, 1)
	if bytes.Equal(a, b) {
		t.Errorf("two requests sent the same body %s", a)
	}
	var v struct {
		Messages []struct {
			Content []struct{ Type, Text string }
		}
	}
	if err := json.Unmarshal(a, &v); err != nil || len(v.Messages) != 1 || len(v.Messages[0].Content) != 2 {
		t.Fatalf("body %s (%v)", a, err)
	}
	text := v.Messages[0].Content[1].Text
	if !strings.HasPrefix(text, "Request ") || !strings.HasSuffix(text, "what is this") {
		t.Errorf("text part %q", text)
	}
	if !strings.Contains(text, "example.com") && !strings.Contains(text, "555-0132") && !strings.Contains(text, "4111 1111") {
		t.Errorf("--pii-share 1, but no PII in %q", text)
	}
	if n := strings.Count(text, "Request "); n != 1 {
		t.Errorf("text part marked %d times (templates share its parts): %q", n, text)
	}
}

// A bad line of a prompts file is named by its line and said in terms of the file, not of the
// Go types it was read into ("json: cannot unmarshal string into Go value of type struct {
// Prompt *string ...").
func TestPromptsFileBadLines(t *testing.T) {
	tests := []struct{ name, line, want string }{
		{"plain text", "what is an LLM?", `p.jsonl:2: not JSON (invalid character 'w' looking for beginning of value); want {"prompt": "..."}`},
		{"a string", `"what is an LLM?"`, `p.jsonl:2: a JSON string; want {"prompt": "..."}`},
		{"a number prompt", `{"prompt": 5}`, `p.jsonl:2: a JSON number in "prompt"; want {"prompt": "..."}`},
		{"array of numbers", `[1, 2]`, `p.jsonl:2: a JSON number; want`},
		{"neither field", `{"text": "hi"}`, `p.jsonl:2: want "prompt" or "messages"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir() + "/p.jsonl"
			os.WriteFile(path, []byte(`{"prompt": "fine"}`+"\n"+tt.line+"\n"), 0o644)
			_, err := readPrompts(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "Go ") {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// A target none of whose requests succeeded has no latency: the table shows "-", not 0, and no
// added latency over the baseline, which was the baseline's own latency negated (-20.00ms: the
// target looked faster than the backend it stands in front of).
func TestSummarizeTargetWithoutSuccess(t *testing.T) {
	runs := []*Result{
		{Target: "direct", Requests: 10, OK: 10, Latency: Dist{N: 10, P50: 20 * time.Millisecond, P99: 25 * time.Millisecond},
			Service: Dist{N: 10, P50: 20 * time.Millisecond}},
		{Target: "gw", Requests: 10, Errors: map[string]int64{"timeout": 10}, LastError: "timeout"},
	}
	s := summarize([]Target{{Name: "direct"}, {Name: "gw"}}, runs)
	if s[1].AddedP50 != 0 || s[1].AddedP99 != 0 || s[1].AddedServiceP50 != 0 {
		t.Errorf("added p50 %v, p99 %v, service p50 %v; want 0", s[1].AddedP50, s[1].AddedP99, s[1].AddedServiceP50)
	}
	var table bytes.Buffer
	WriteTable(&table, &Report{Options: testOptions(), Runs: runs, Summaries: s})
	// target req/s p50 p90 p99 p99.9 max ok errors late +p50 +p99 ratio
	want := []string{"gw", "0.0", "-", "-", "-", "-", "-", "0", "10", "0", "-", "-", "0.000"}
	rows := 0
	for _, line := range strings.Split(table.String(), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "gw" && f[1] != "errors:" {
			rows++
			if !slices.Equal(f, want) {
				t.Errorf("row %q, want %q", f, want)
			}
		}
	}
	if rows != 1 {
		t.Errorf("%d rows of gw in\n%s", rows, table.String())
	}
	if strings.Contains(table.String(), "-20.00ms") || !strings.Contains(table.String(), "from the actual send p50 -, p99 - (- p50)") {
		t.Errorf("table:\n%s", table.String())
	}
}
