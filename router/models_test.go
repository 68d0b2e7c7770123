package router

import (
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
