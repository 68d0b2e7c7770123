package gateway

import (
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pkoukk/tiktoken-go"
	tiktokenloader "github.com/pkoukk/tiktoken-go-loader"
	"github.com/valyala/fastjson"

	"github.com/llmgate/llmgate/drift"
)

// tokenCounter counts tokens for drift samples whose backend reported no usage. Tokenizing costs
// milliseconds for long prompts, so it runs on one background worker with a bounded queue: under
// overload samples go in without their counts, counted, never queued without bound, and the
// request never waits. The vocabulary (cl100k_base, from the embedded offline loader: nothing is downloaded)
// is loaded on first use, so gateways whose backends report usage never pay its memory.
type tokenCounter struct {
	// queue is never closed: a request still in flight when shutdown closes the counter may
	// push after it (a send on a closed channel panics), and finds it full at worst.
	queue   chan tokenJob
	stop    chan struct{}
	done    chan struct{}
	dropped *metrics.Counter
}

// The vocabulary is the process's, loaded once: tiktoken's loader is a package global, and
// several gateways may share a process (tests).
var (
	encOnce sync.Once
	encMu   sync.Mutex // serialises Encode across gateways
	enc     *tiktoken.Tiktoken
	encErr  error
)

// tokenJob is one sample waiting for its token counts, with copies of the texts to count.
type tokenJob struct {
	vs         *versionStats
	sample     drift.Sample
	op         operation
	request    []byte // the request body
	completion []byte // the buffered response body; nil for streams
	// vm, when set, gets the counts the backend did not report in its token metrics
	// (llmgate_tokens_total, gen_ai_client_token_usage); countOut says the completion's is one.
	vm       *versionMetrics
	countOut bool
}

const tokenQueueLen = 256

func (t *tokenCounter) start() {
	t.queue = make(chan tokenJob, tokenQueueLen)
	t.stop = make(chan struct{})
	t.done = make(chan struct{})
	go func() {
		defer close(t.done)
		var p fastjson.Parser
		take := func(j tokenJob) {
			t.count(&p, &j)
			j.addToMetrics()
			j.vs.observe(&j.sample)
		}
		for {
			select {
			case j := <-t.queue:
				take(j)
			case <-t.stop:
				for { // the samples queued before close go in, as they would have
					select {
					case j := <-t.queue:
						take(j)
					default:
						return
					}
				}
			}
		}
	}()
}

func (t *tokenCounter) close() {
	close(t.stop)
	<-t.done
}

// push queues r's sample s for counting or, when the queue is full, records it as it is. For
// streams without usage, completion tokens are the number of content events (one token each in
// vLLM and Ollama streams) rather than a re-tokenization of text the gateway did not keep. With
// vm set, the counts also go to the version's token metrics, which the backend's usage did not
// feed.
func (t *tokenCounter) push(g *Gateway, vs *versionStats, s *drift.Sample, r *request, vm *versionMetrics) {
	j := tokenJob{vs: vs, sample: *s, op: r.op, vm: vm, countOut: s.CompletionTokens < 0}
	if s.PromptTokens < 0 {
		j.request = append([]byte(nil), r.body...)
	}
	if s.CompletionTokens < 0 {
		if r.stream {
			j.sample.CompletionTokens = int64(r.tokenEvents)
		} else {
			j.completion = append([]byte(nil), r.upstreamResp.Body()...)
		}
	}
	select {
	case t.queue <- j:
	default:
		// No room to count: the sample goes in with the counts it lacks left unmeasured, not
		// lost. Only successful answers wait here: losing them under load left the failures
		// alone in the window, and the version's error rate rose with the load.
		t.dropped.Inc()
		vs.observe(&j.sample)
	}
}

// addToMetrics adds the counts j made to its version's token metrics: a stream cut before its
// usage chunk (the client left, the backend broke it) and a backend that reports no usage still
// generated tokens, and the metrics counted none of them.
func (j *tokenJob) addToMetrics() {
	if j.vm == nil {
		return
	}
	if n := j.sample.PromptTokens; j.request != nil && n > 0 {
		j.vm.inputTokens.Update(float64(n))
		j.vm.inputTotal.Add(int(n))
	}
	if n := j.sample.CompletionTokens; j.countOut && n > 0 {
		j.vm.outputTokens.Update(float64(n))
		j.vm.outputTotal.Add(int(n))
	}
}

func (t *tokenCounter) count(p *fastjson.Parser, j *tokenJob) {
	encOnce.Do(func() {
		tiktoken.SetBpeLoader(tiktokenloader.NewOfflineLoader())
		enc, encErr = tiktoken.GetEncoding("cl100k_base")
	})
	if encErr != nil {
		return // the sample keeps "not measured"
	}
	encMu.Lock()
	defer encMu.Unlock()
	n := func(text []byte) int64 { return int64(len(enc.EncodeOrdinary(string(text)))) }
	if j.request != nil {
		if root, err := p.ParseBytes(j.request); err == nil {
			var total int64
			forEachPromptText(j.op, root, func(_ *fastjson.Value, text []byte, _ promptTextKind) { total += n(text) })
			j.sample.PromptTokens = total
		}
	}
	if j.completion != nil {
		if root, err := p.ParseBytes(j.completion); err == nil {
			var total int64
			choices := root.GetArray("choices") // nil when absent or not an array
			for _, c := range choices {
				text := c.GetStringBytes("message", "content")
				if text == nil {
					text = c.GetStringBytes("text")
				}
				total += n(text)
			}
			j.sample.CompletionTokens = total
		}
	}
}
