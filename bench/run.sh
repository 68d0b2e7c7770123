#!/usr/bin/env bash
# End-to-end comparison: direct to a simulated backend, through a bare fasthttp reverse proxy,
# and through llmgate, in interleaved rounds of one run. Pinning follows bench/RESULTS.md:
# backend and proxies share core 0, the load generator has core 1, every Go process runs with
# GOMAXPROCS=1 so they do not fight over cores they were not given.
#
#   bench/run.sh               # all scenarios (about 4 minutes)
#   DURATION=5s bench/run.sh   # shorter rounds
#   SCENARIOS="chat" ROUNDS=5 bench/run.sh   # some scenarios: chat, stream, closed, guard
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-1000}
SCENARIOS=${SCENARIOS:-chat stream closed guard}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

go build -o "$out/llmgate" ./cmd/llmgate
bin=$out/llmgate

pin() { # pin CORE CMD...: run on one core, one P (exec: a backgrounded call's pid is the process)
	local core=$1; shift
	if command -v taskset >/dev/null && (($(nproc) > 1)); then
		GOMAXPROCS=1 exec taskset -c "$core" "$@"
	else
		GOMAXPROCS=1 exec "$@"
	fi
}

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

pin 0 "$bin" fakellm --flavor vllm --model bench-model --listen 127.0.0.1:18000 --output-tokens 16 2>"$out/fakellm.log" &
pids+=($!)
pin 0 "$bin" bareproxy --upstream http://127.0.0.1:18000 --listen 127.0.0.1:18001 2>"$out/bareproxy.log" &
pids+=($!)
cat >"$out/gateway.yaml" <<YAML
listen: "127.0.0.1:18080"
admin: {listen: "127.0.0.1:18081"}
models:
  - alias: bench-model
    versions:
      - version: v1
        backends:
          - {url: "http://127.0.0.1:18000", kind: vllm, model: bench-model}
YAML
for port in 18000 18001; do
	for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
pin 0 "$bin" serve --config "$out/gateway.yaml" >"$out/llmgate.out" 2>"$out/llmgate.log" &
pids+=($!)
# The same gateway with the guard fully on: PII redaction with restore on prompts and
# completions, safety rules on both.
cat >"$out/gateway-guard.yaml" <<YAML
listen: "127.0.0.1:18090"
admin: {listen: "127.0.0.1:18091"}
models:
  - alias: bench-model
    versions:
      - version: v1
        backends:
          - {url: "http://127.0.0.1:18000", kind: vllm, model: bench-model}
    guard:
      pii: {prompt: redact, completion: redact, restore: true}
      safety: {prompt: block, completion: block}
YAML
pin 0 "$bin" serve --config "$out/gateway-guard.yaml" >"$out/llmgate-guard.out" 2>"$out/llmgate-guard.log" &
pids+=($!)
for port in 18080 18090; do
	for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

targets=(--compare direct=http://127.0.0.1:18000 --compare bareproxy=http://127.0.0.1:18001 --compare llmgate=http://127.0.0.1:18080)
common=(--model bench-model --rounds "$ROUNDS" --duration "$DURATION" --warmup 2s --proc-name llmgate --quiet)

want chat && echo "== chat, 1 KiB prompt, open loop at $RATE req/s" &&
(pin 1 "$bin" bench "${targets[@]}" "${common[@]}" --workload chat --prompt-bytes 1024 --rate "$RATE" \
	--json "$out/chat-open.json" --svg "$out/chat-open.svg")
want stream && echo "== chat-stream, 1 KiB prompt, 16 events, open loop at 200 req/s" &&
(pin 1 "$bin" bench "${targets[@]}" "${common[@]}" --workload chat-stream --prompt-bytes 1024 --rate 200 \
	--json "$out/stream-open.json")
want closed && echo "== chat, 1 KiB prompt, closed loop with 32 connections (max throughput)" &&
(pin 1 "$bin" bench "${targets[@]}" "${common[@]}" --workload chat --prompt-bytes 1024 --rate 0 --connections 32 \
	--json "$out/chat-closed.json")
want guard && echo "== guard on and off: chat, 1 KiB prompt, 10 % with PII, open loop at $RATE req/s" &&
(pin 1 "$bin" bench --compare direct=http://127.0.0.1:18000 --compare llmgate=http://127.0.0.1:18080 \
	--compare llmgate-guard=http://127.0.0.1:18090 "${common[@]}" --workload chat --prompt-bytes 1024 \
	--pii-share 0.1 --rate "$RATE" --json "$out/guard-open.json")
want guard && echo "== guard on and off: chat-stream, 1 KiB prompt, open loop at 200 req/s" &&
(pin 1 "$bin" bench --compare direct=http://127.0.0.1:18000 --compare llmgate=http://127.0.0.1:18080 \
	--compare llmgate-guard=http://127.0.0.1:18090 "${common[@]}" --workload chat-stream --prompt-bytes 1024 \
	--pii-share 0.1 --rate 200 --json "$out/guard-stream.json")
true
