package drift

import "time"

// Sample is one request's features, filled by the gateway at stage 9.
// Numerical fields use a negative value for "not measured" (Reset sets them);
// categorical fields use their zero value for "unknown".
type Sample struct {
	PromptTokens     int64         // prompt tokens (backend usage or tokenizer)
	CompletionTokens int64         // completion tokens
	PromptBytes      int64         // bytes of the prompt text
	Latency          time.Duration // end to end, as seen by the client (the gateway records answers a backend gave only)
	TTFT             time.Duration // time to first token (streaming)
	InterToken       time.Duration // mean inter-token latency
	Overhead         time.Duration // time spent in the gateway itself

	FinishReason FinishReason
	Status       Status
	Cache        CacheResult
	Entities     uint16 // bitset of guard PII entity types found (bit i = type i)
	Safety       uint16 // bitset of guard safety categories found
	Refusal      bool   // completion starts like a refusal (see RefusalDetector)
	Script       Script // dominant script of the prompt (see DetectScript)
	Tools        bool   // tools were requested
	Stream       bool   // streaming response
	// NotForwarded: the gateway answered the request without asking a backend, and not as a
	// failure of the version: a prompt the guard blocked, a request it refused as bad for the
	// version (a 4xx). Such requests are no answer of the version's backends (see Answered).
	NotForwarded bool

	// At is when the request ended; the gateway already read the clock for
	// Latency, and passing it saves Observe a second read (tens of ns on
	// some VMs). Zero means "now" by the Recorder's clock.
	At time.Time
}

// Reset marks every numerical field as not measured and clears the rest,
// so a pooled Sample does not leak values between requests.
func (s *Sample) Reset() {
	*s = Sample{PromptTokens: -1, CompletionTokens: -1, PromptBytes: -1,
		Latency: -1, TTFT: -1, InterToken: -1, Overhead: -1}
}

// FinishReason is the OpenAI finish_reason of a completion.
type FinishReason uint8

// Finish reasons; FinishOther covers any value the gateway does not map.
const (
	FinishUnknown FinishReason = iota
	FinishStop
	FinishLength
	FinishToolCalls
	FinishContentFilter
	FinishOther
	numFinish
)

// Status is the outcome class of a request (status class and error type).
type Status uint8

// Statuses; the gateway maps HTTP codes and its own errors onto these.
const (
	StatusOK            Status = iota // 2xx
	StatusClientError                 // 4xx other than 429
	StatusRateLimited                 // 429
	StatusBlocked                     // refused by the guard
	StatusUpstreamError               // 5xx from the backend
	StatusTimeout                     // deadline exceeded
	StatusCanceled                    // client went away, or the gateway's shutdown cut the request
	StatusUnavailable                 // no healthy backend
	StatusOther
	numStatus
)

// CacheResult says whether the response cache was used.
type CacheResult uint8

// Cache results; CacheBypass means the request was not cacheable.
const (
	CacheBypass CacheResult = iota
	CacheHit
	CacheMiss
	numCache
)

// Script is the dominant writing system of a text.
type Script uint8

// Scripts; ScriptNone means no letters were seen.
const (
	ScriptNone Script = iota
	ScriptLatin
	ScriptCyrillic
	ScriptGreek
	ScriptArabic
	ScriptHebrew
	ScriptDevanagari
	ScriptThai
	ScriptHan    // CJK ideographs without kana: Chinese
	ScriptKana   // hiragana/katakana present: Japanese
	ScriptHangul // Korean
	ScriptOther  // letters of any other script
	numScript
)

// guardBits is the width of the Entities and Safety bitsets.
const guardBits = 16

// Feature identifies one recorded feature.
type Feature uint8

// Numerical features come first, then categorical ones.
const (
	FeaturePromptTokens Feature = iota
	FeatureCompletionTokens
	FeatureLatency
	FeatureTTFT
	FeatureInterToken
	FeatureOverhead
	FeaturePromptBytes
	FeatureFinishReason
	FeatureStatus
	FeatureCache
	FeatureEntities
	FeatureSafety
	FeatureRefusal
	FeatureScript
	FeatureTools
	FeatureStream
	NumFeatures int = iota
)

// NumNumeric is the number of numerical features; they are Feature(0) to
// Feature(NumNumeric-1).
const NumNumeric = int(FeaturePromptBytes) + 1

// NumCategorical is the number of categorical features.
const NumCategorical = NumFeatures - NumNumeric

var featureNames = [NumFeatures]string{
	"prompt_tokens", "completion_tokens", "latency_us", "ttft_us", "inter_token_us",
	"overhead_us", "prompt_bytes", "finish_reason", "status", "cache", "guard_entities",
	"safety_categories", "refusal", "script", "tools", "stream",
}

// String returns the feature's stable name, used in JSON and metrics labels.
// Latencies are recorded in microseconds, hence the _us suffix.
func (f Feature) String() string {
	if int(f) < NumFeatures {
		return featureNames[f]
	}
	return "invalid"
}

// Numeric reports whether f is a numerical feature.
func (f Feature) Numeric() bool { return int(f) < NumNumeric }

// FeatureByName returns the feature with the given String name.
func FeatureByName(name string) (Feature, bool) {
	for i, n := range featureNames {
		if n == name {
			return Feature(i), true
		}
	}
	return 0, false
}

var (
	finishLabels = []string{"unknown", "stop", "length", "tool_calls", "content_filter", "other"}
	statusLabels = []string{"ok", "client_error", "rate_limited", "blocked", "upstream_error",
		"timeout", "canceled", "unavailable", "other"}
	cacheLabels  = []string{"bypass", "hit", "miss"}
	boolLabels   = []string{"no", "yes"}
	scriptLabels = []string{"none", "latin", "cyrillic", "greek", "arabic", "hebrew",
		"devanagari", "thai", "han", "kana", "hangul", "other"}
	bitLabels = func() []string {
		l := []string{"none"}
		for i := range guardBits {
			l = append(l, "bit"+string(rune('0'+i/10))+string(rune('0'+i%10)))
		}
		return l
	}()
	categoryLabels = [NumCategorical][]string{finishLabels, statusLabels, cacheLabels,
		bitLabels, bitLabels, boolLabels, scriptLabels, boolLabels, boolLabels}
)

// Categories returns the category labels of a categorical feature, in counter
// order, or nil for a numerical one. The guard bitsets are labelled "none"
// and "bit00".."bit15"; the gateway maps bits to its own entity names. The
// returned slice must not be modified.
func (f Feature) Categories() []string {
	if f.Numeric() || int(f) >= NumFeatures {
		return nil
	}
	return categoryLabels[int(f)-NumNumeric]
}

// catOffset[i] is where categorical feature NumNumeric+i starts in the flat
// counter array; catOffset[NumCategorical] is the array length.
var catOffset = func() (o [NumCategorical + 1]int) {
	for i, l := range categoryLabels {
		o[i+1] = o[i] + len(l)
	}
	return o
}()

// numFeatureCounters is the number of the categorical features' counters.
const numFeatureCounters = int(numFinish) + int(numStatus) + int(numCache) + 2*(guardBits+1) + 2 + int(numScript) + 2 + 2

// catNotForwarded is the counter of the requests answered without asking a backend
// (Sample.NotForwarded), after the features' counters: it belongs to no feature, and
// Snapshot.Answered takes it out.
const catNotForwarded = numFeatureCounters

// numCatCounters is the length of the flat categorical counter array.
const numCatCounters = numFeatureCounters + 1
