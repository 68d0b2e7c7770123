package main

import (
	_ "embed"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/llmgate/llmgate/bench/fakellm"
	"github.com/llmgate/llmgate/config"
	"github.com/llmgate/llmgate/router/store"
)

//go:embed demo.yaml
var demoConfig string

// runDemo starts two simulated backends (two versions of one model) and the gateway in front of
// them, then prints examples to paste.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "gateway address")
	adminListen := fs.String("admin-listen", "127.0.0.1:8081", "admin and /metrics address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	v1, v1URL, err := startFake(fakellm.Options{Flavor: "vllm", Model: "meta-llama/Llama-3.1-8B-Instruct", TTFT: 150 * time.Millisecond, TokensPerSecond: 40, OutputTokens: 24, Seed: 1})
	if err != nil {
		fmt.Fprintln(stderr, "llmgate demo:", err)
		return 1
	}
	defer v1.Close()
	v2, v2URL, err := startFake(fakellm.Options{Flavor: "ollama", Model: "llama3.1:8b", TTFT: 100 * time.Millisecond, TokensPerSecond: 60, OutputTokens: 24, Seed: 2})
	if err != nil {
		fmt.Fprintln(stderr, "llmgate demo:", err)
		return 1
	}
	defer v2.Close()

	text := strings.NewReplacer("{{LISTEN}}", *listen, "{{ADMIN_LISTEN}}", *adminListen, "{{V1_URL}}", v1URL, "{{V2_URL}}", v2URL).Replace(demoConfig)
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		fmt.Fprintln(stderr, "llmgate demo: embedded config:", err)
		return 1
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "llmgate demo: embedded config:", err)
		return 1
	}
	// The demo keeps admin changes in memory: every run starts from its embedded config.
	g, lns, err := start(cfg, io.Discard, store.NewMemory())
	if err != nil {
		fmt.Fprintln(stderr, "llmgate demo:", err, "(is another llmgate running? choose free ports with --listen and --admin-listen)")
		return 1
	}
	printDemo(stdout, "http://"+lns[0].Addr().String(), "http://"+lns[1].Addr().String(), v1URL, v2URL)
	return waitForSignal(g, lns, stderr)
}

func startFake(opts fakellm.Options) (*fakellm.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("simulated backend: %v", shortErr(err))
	}
	s := fakellm.New(opts)
	go s.Serve(ln) //nolint:errcheck // Close ends it
	return s, "http://" + ln.Addr().String(), nil
}

func printDemo(w io.Writer, base, admin, v1URL, v2URL string) {
	fmt.Fprintf(w, `llmgate demo is running.

  gateway (OpenAI API)  %[1]s/v1
  admin and /metrics    %[2]s
  model "chat"          v1 (stable) on a simulated vLLM at %[3]s
                        v2          on a simulated Ollama at %[4]s

Try it (Ctrl-C stops everything):

  curl -s %[1]s/v1/models

  curl -s %[1]s/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"chat","messages":[{"role":"user","content":"Hello!"}]}'

  # stream, pinned to version v2
  curl -sN %[1]s/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"chat@v2","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'

  curl -s %[1]s/v1/embeddings -H 'Content-Type: application/json' \
    -d '{"model":"chat","input":["first","second"]}'

  curl -s %[2]s/metrics | grep llmgate_requests_total

Python (pip install openai):

  from openai import OpenAI
  client = OpenAI(base_url="%[1]s/v1", api_key="unused")
  r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hello!"}])
  print(r.choices[0].message.content)

Node (npm install openai; save as demo.mjs, run node demo.mjs):

  import OpenAI from "openai";
  const client = new OpenAI({ baseURL: "%[1]s/v1", apiKey: "unused" });
  const stream = await client.chat.completions.create({ model: "chat", stream: true, messages: [{ role: "user", content: "Hello!" }] });
  for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
  console.log();

Go (go get github.com/sashabaranov/go-openai):

  package main

  import (
  	"context"
  	"fmt"

  	"github.com/sashabaranov/go-openai"
  )

  func main() {
  	cfg := openai.DefaultConfig("unused")
  	cfg.BaseURL = "%[1]s/v1"
  	client := openai.NewClientWithConfig(cfg)
  	resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Model: "chat",
  		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "Hello!"}}})
  	if err != nil {
  		panic(err)
  	}
  	fmt.Println(resp.Choices[0].Message.Content)
  }
`, base, admin, v1URL, v2URL)
}
