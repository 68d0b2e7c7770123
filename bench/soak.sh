#!/usr/bin/env bash
# Soak: llmgate with every hot-path feature on under a steady mix for DURATION (default 10
# minutes): buffered chat at 1,500 req/s, streams at 400 req/s, streams the backend cuts
# mid-way (fakellm --disconnect-rate), and streams the client abandons (a 20 ms client timeout
# on 80 ms streams). The gateway's RSS is sampled every 10 s; the run fails when the last
# minute's RSS exceeds the second minute's by more than 10 % (a leak), or on any gateway error
# other than the injected ones.
#
#   bench/soak.sh                   # 10 minutes
#   DURATION=2m bench/soak.sh       # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/soak
mkdir -p "$out"
DURATION=${DURATION:-10m}
case $DURATION in
*m) secs=$(( ${DURATION%m} * 60 )) ;;
*s) secs=${DURATION%s} ;;
*) echo "DURATION: want minutes (10m) or seconds (600s)" >&2; exit 2 ;;
esac
(( secs >= 120 )) || { echo "DURATION must be at least 2m" >&2; exit 2; }

go build -o bench/out/llmgate ./cmd/llmgate
bin=bench/out/llmgate
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

# Two backends: fast for buffered chat, paced (200 tokens/s: 16 tokens in 80 ms) and flaky
# (5 % of streams cut) for streams.
"$bin" fakellm --flavor vllm --model fast --listen 127.0.0.1:18100 2>"$out/fast.log" &
pids+=($!)
"$bin" fakellm --flavor vllm --model slow --listen 127.0.0.1:18101 --tokens-per-second 200 --disconnect-rate 0.05 2>"$out/slow.log" &
pids+=($!)
rm -f "$out/state.db"
cat >"$out/gateway.yaml" <<YAML
listen: "127.0.0.1:18180"
admin: {listen: "127.0.0.1:18181"}
state: {path: "$out/state.db"}
models:
  - alias: fast
    versions:
      - version: v1
        backends: [{url: "http://127.0.0.1:18100", kind: vllm, model: fast}]
    guard:
      pii: {prompt: redact, completion: redact, restore: true}
      safety: {prompt: block, completion: block}
  - alias: slow
    versions:
      - version: v1
        backends: [{url: "http://127.0.0.1:18101", kind: vllm, model: slow}]
    guard:
      pii: {prompt: redact, completion: redact, restore: true}
      safety: {prompt: block, completion: block}
YAML
for port in 18100 18101; do
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
"$bin" serve --config "$out/gateway.yaml" >"$out/llmgate.out" 2>"$out/llmgate.log" &
gw=$!
pids+=($gw)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18180) 2>/dev/null && break; sleep 0.1; done

load=()
"$bin" bench --url http://127.0.0.1:18180 --model fast --workload chat --pii-share 0.1 --rate 1500 \
	--duration "$DURATION" --warmup 0s --quiet >"$out/chat.txt" 2>&1 &
load+=($!)
"$bin" bench --url http://127.0.0.1:18180 --model slow --workload chat-stream --pii-share 0.1 --rate 400 \
	--duration "$DURATION" --warmup 0s --quiet >"$out/stream.txt" 2>&1 &
load+=($!)
"$bin" bench --url http://127.0.0.1:18180 --model slow --workload chat-stream --rate 100 --timeout 20ms \
	--duration "$DURATION" --warmup 0s --quiet >"$out/abandon.txt" 2>&1 &
load+=($!)
pids+=("${load[@]}")

echo "seconds,rss_kib" >"$out/rss.csv"
start=$(date +%s)
while kill -0 "${load[0]}" 2>/dev/null; do
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$gw/status")
	echo "$(( $(date +%s) - start )),$rss" >>"$out/rss.csv"
	sleep 10
done
wait "${load[@]}" || true

# Second minute (after warm-up) against the last minute.
early=$(awk -F, 'NR > 1 && $1 >= 60 && $1 < 120 {s += $2; n++} END {print int(s / n)}' "$out/rss.csv")
late=$(awk -F, -v end="$secs" 'NR > 1 && $1 >= end - 60 {s += $2; n++} END {print int(s / n)}' "$out/rss.csv")
peak=$(awk '/^VmHWM/ {print $2}' "/proc/$gw/status")
cat "$out/chat.txt" "$out/stream.txt" "$out/abandon.txt" | grep -E "target|errors|process" || true
echo "llmgate RSS: second minute $((early / 1024)) MiB, last minute $((late / 1024)) MiB, peak $((peak / 1024)) MiB (samples in $out/rss.csv)"
if (( late > early * 11 / 10 )); then
	echo "FAIL: RSS grew by more than 10 %" >&2
	exit 1
fi
# Every request has ended: no backend may still count one in flight (a hold never released
# skews least-loaded picking for good), and both stay in service (5 % of cut streams is no
# reason to eject).
metrics=$(curl -fsS http://127.0.0.1:18181/metrics)
grep -E '^llmgate_backend_(in_flight|up)\{' <<<"$metrics" || true
if grep -E '^llmgate_backend_in_flight\{' <<<"$metrics" | grep -vqE ' 0$'; then
	echo "FAIL: requests still counted in flight after the load ended" >&2
	exit 1
fi
if grep -E '^llmgate_backend_up\{' <<<"$metrics" | grep -vqE ' 1$'; then
	echo "FAIL: a backend is out of service after the soak" >&2
	exit 1
fi
echo "no growth, nothing left in flight"
