package router

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/llmgate/llmgate/config"
)

func TestServes(t *testing.T) {
	tests := []struct {
		ids         []string
		kind, model string
		want        bool
	}{
		{[]string{"meta-llama/Llama-3.1-8B-Instruct"}, config.KindVLLM, "meta-llama/Llama-3.1-8B-Instruct", true},
		{[]string{"meta-llama/Llama-3.1-8B-Instruct"}, config.KindVLLM, "meta-llama/Llama-3.1-8B", false},
		{[]string{"llama3.1:latest"}, config.KindOllama, "llama3.1", true}, // Ollama's default tag
		{[]string{"llama3.1:latest"}, config.KindVLLM, "llama3.1", false},
		{[]string{"llama3.1:8b"}, config.KindOllama, "llama3.1", false},
		{nil, config.KindOpenAI, "gpt", false},
	}
	for _, tt := range tests {
		if got := Serves(tt.ids, tt.kind, tt.model); got != tt.want {
			t.Errorf("Serves(%v, %s, %q) = %v, want %v", tt.ids, tt.kind, tt.model, got, tt.want)
		}
	}
}

// CheckServes names what a backend lists when it does not list the model, "no models" when it
// lists none (a base URL ending in /v1 that a catch-all route answers), and trusts a backend
// whose list cannot be read.
func TestCheckServes(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		model  string
		want   string
	}{
		{"listed", 200, `{"data":[{"id":"m"}]}`, "m", ""},
		{"not listed", 200, `{"data":[{"id":"m"},{"id":"n"}]}`, "x", `it does not serve model "x"; its /v1/models lists m, n`},
		{"empty list", 200, `{"ok":true}`, "x", `it does not serve model "x"; its /v1/models lists no models`},
		{"unreadable list", 404, `not found`, "x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body) //nolint:errcheck
			}))
			defer srv.Close()
			err := CheckServes(context.Background(), srv.Client(), &Backend{URL: srv.URL, Kind: config.KindOpenAI, Model: tt.model})
			if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
				t.Fatalf("CheckServes: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestURLHint(t *testing.T) {
	for url, hinted := range map[string]bool{
		"http://gpu1:8000": false, "http://gpu1:8000/v1": true, "https://h/v1/": true,
		"http://h/prefix": false, "http://h/v10": false,
	} {
		if got := URLHint(url) != ""; got != hinted {
			t.Errorf("URLHint(%q) = %q; want a hint: %v", url, URLHint(url), hinted)
		}
	}
}
