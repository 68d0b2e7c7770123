package cache

import "testing"

func TestDecide(t *testing.T) {
	on := Policy{Enabled: true}
	det := `{"messages":[],"temperature":0}`
	tests := []struct {
		name       string
		p          Policy
		kind       Kind
		body       string // "" means Prepare was skipped (nil req); "!" an uncacheable body
		hdr, cc    string
		want       Decision
		wantReason Reason
	}{
		{"deterministic: temperature 0", on, KindChat, det, "", "", Use, ReasonNone},
		{"deterministic: seed", on, KindChat, `{"temperature":0.9,"seed":3}`, "", "", Use, ReasonNone},
		{"no temperature means 1", on, KindChat, `{"messages":[]}`, "", "", Bypass, ReasonNonDeterministic},
		{"temperature above 0", on, KindChat, `{"temperature":0.2}`, "", "", Bypass, ReasonNonDeterministic},
		{"non-deterministic allowed", Policy{Enabled: true, AllowNonDeterministic: true}, KindChat, `{"temperature":0.2}`, "", "", Use, ReasonNone},
		{"embeddings are deterministic", on, KindEmbeddings, `{"input":"x"}`, "", "", Use, ReasonNone},
		{"completions follow chat rules", on, KindCompletion, `{"prompt":"x"}`, "", "", Bypass, ReasonNonDeterministic},
		{"n > 1 is cacheable", on, KindChat, `{"temperature":0,"n":4}`, "", "", Use, ReasonNone},
		{"bad n", on, KindChat, `{"temperature":0,"n":0.5}`, "", "", Bypass, ReasonChoices},
		{"usage on every chunk", on, KindChat, `{"temperature":0,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats": true}}`, "", "", Bypass, ReasonPerChunkUsage},
		{"usage at the end only", on, KindChat, `{"temperature":0,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":false}}`, "", "", Use, ReasonNone},
		{"alias disabled", Policy{}, KindChat, "", "", "", Bypass, ReasonDisabled},
		{"alias disabled, only-if-cached: 504 at once", Policy{}, KindChat, "", "only-if-cached", "", OnlyCached, ReasonDisabled},
		{"uncacheable body", on, KindChat, "!", "", "", Bypass, ReasonUncacheable},
		{"header bypass", on, KindChat, det, "bypass", "", Bypass, ReasonBypass},
		{"header bypass wins over only-if-cached", on, KindChat, det, "Bypass", "only-if-cached", Bypass, ReasonBypass},
		{"header refresh", on, KindChat, det, " refresh ", "", Refresh, ReasonRefresh},
		{"header only-if-cached", on, KindChat, det, "only-if-cached", "", OnlyIfCached, ReasonOnlyIfCached},
		{"header unknown", on, KindChat, det, "sometimes", "", Bypass, ReasonBadHeader},
		{"no-store: lookup, never store", on, KindChat, det, "", "no-store", Lookup, ReasonNoStore},
		{"no-store among directives", on, KindChat, det, "", "max-age=0, No-Store", Lookup, ReasonNoStore},
		{"no-cache ignored (SDKs send it with every stream)", on, KindChat, det, "", "no-cache", Use, ReasonNone},
		{"refresh + no-store: nothing", on, KindChat, det, "refresh", "no-store", Bypass, ReasonNoStore},
		{"Cache-Control only-if-cached", on, KindChat, det, "", "only-if-cached", OnlyIfCached, ReasonOnlyIfCached},
		{"only-if-cached + no-store", on, KindChat, det, "only-if-cached", "no-store", OnlyIfCached, ReasonOnlyIfCached},
		{"only-if-cached, non-deterministic", on, KindChat, `{"temperature":1}`, "only-if-cached", "", OnlyCached, ReasonNonDeterministic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req *Request
			switch tt.body {
			case "":
			case "!":
				req = new(Request)
				_ = Prepare(req, tt.kind, "a", "v", []byte(`{`))
			default:
				req = new(Request)
				if err := Prepare(req, tt.kind, "a", "v", []byte(tt.body)); err != nil {
					t.Fatal(err)
				}
			}
			d, why := Decide(tt.p, req, []byte(tt.hdr), []byte(tt.cc))
			if d != tt.want || why != tt.wantReason {
				t.Fatalf("got %03b %v, want %03b %v", d, why, tt.want, tt.wantReason)
			}
		})
	}
}
