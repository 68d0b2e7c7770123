#!/usr/bin/env bash
# Where llmgate-full's added latency comes from at a fixed arrival rate: the bare proxy and
# llmgate with its defaults, with the response cache only, with the guard only and with both
# (llmgate-full of run.sh), compared in interleaved rounds by `llmgate bench` (open loop, 1 KiB
# chat prompts, 10 % with PII), pinned as run.sh pins. bench/attribute.sh gives the same
# variants' CPU per request under a closed loop; this gives their added p50 and p99 at a rate
# where the gateway idles between requests and its tables are no longer in the caches.
#
#   bench/latency.sh                                   # 2,000 req/s, about 2 minutes
#   RATE=200 WORKLOAD=chat-stream bench/latency.sh     # streams: added TTFT per variant
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/latency
mkdir -p "$out"
rm -f "$out"/state-*.db
go build -o "$out/llmgate" ./cmd/llmgate
bin=$out/llmgate

. bench/lib.sh # pin, waitport, start_backend, start_bareproxy, start_variants
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
declare -A pid port

start_backend 18600
start_bareproxy 18601 18600
start_variants 18610 18600
targets=(--compare direct=http://127.0.0.1:18600)
for name in bareproxy defaults cache guard full; do
	targets+=(--compare "$name=http://127.0.0.1:${port[$name]}")
done
# In a subshell: pin execs, and the script must live on to run its EXIT trap (the servers).
(pin 1 "$bin" bench "${targets[@]}" --model bench-model --rounds "${ROUNDS:-3}" --duration "${DURATION:-4s}" --warmup 1s \
	--quiet --workload "${WORKLOAD:-chat}" --prompt-bytes 1024 --pii-share 0.1 --rate "${RATE:-2000}")
