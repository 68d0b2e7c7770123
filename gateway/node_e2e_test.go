package gateway_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/internal/testtools"
)

// TestNodeSDK runs e2e/node/gateway.test.mjs, which drives the gateway with the official openai
// npm package: what JavaScript apps depend on (shapes, SSE framing, typed errors, the SDK's
// own retry on 429) checked by the SDK itself rather than by our reading of the spec.
func TestNodeSDK(t *testing.T) {
	t.Parallel()
	node := testtools.Require(t, "node")
	dir, err := filepath.Abs(filepath.Join("..", "e2e", "node"))
	if err != nil {
		t.Fatal(err)
	}
	testtools.RequireNodeModules(t, dir)

	// "chat" serves chat and embeddings from the same model.
	f := startFake(t, fakellm.Options{Model: "meta-llama/Llama-3.1-8B-Instruct", OutputTokens: 12})
	g := startGateway(t, newConfig(t, nil, cached(model("chat", "v1", version("v1", f.backend())))))

	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, node, "--test", "--test-reporter=spec", "gateway.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LLMGATE_BASE_URL="+g.URL+"/v1", "LLMGATE_MODEL=chat", "LLMGATE_EMBEDDING_MODEL=chat", "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test gateway.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
