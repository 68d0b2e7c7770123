#!/usr/bin/env bash
# End-to-end comparison in interleaved rounds of one run: direct to a simulated backend, through
# nginx and haproxy (when installed: apt-get install -y nginx haproxy), a bare fasthttp reverse
# proxy, llmgate with its defaults ("llmgate"), the same without drift statistics
# ("llmgate-nodrift") and llmgate with every hot-path feature on
# ("llmgate-full": PII redaction with restore and safety on both directions, drift statistics,
# the response cache on (every request a miss: each prompt is unique), metrics, log),
# and Portkey's gateway when installed (npm ci --prefix bench/portkey).
# Pinning follows bench/RESULTS.md: backend and proxies share core 0, the load generator has
# core 1, every Go process runs with GOMAXPROCS=1 and nginx/haproxy with one worker/thread.
#
#   bench/run.sh                               # every scenario (about 9 minutes on 2 cores)
#   DURATION=4s ROUNDS=2 bench/run.sh          # quicker
#   SCENARIOS="chat closed" bench/run.sh       # some of: chat stream closed cache rss
#   RESULTS=1 bench/run.sh                     # also rewrite the generated part of RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
DURATION=${DURATION:-4s}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-2000}
SCENARIOS=${SCENARIOS:-chat stream closed cache rss}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

go build -o "$out/llmgate" ./cmd/llmgate
bin=$out/llmgate

. bench/lib.sh # pin, waitport

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

pin 0 "$bin" fakellm --flavor vllm --model bench-model --listen 127.0.0.1:18000 --output-tokens 16 2>"$out/fakellm.log" &
pids+=($!)
waitport 18000
targets=(--compare direct=http://127.0.0.1:18000)
# The backend's own CPU per request is the floor for any server on this machine at that rate.
fake_pid=$!
procs=(--pid "direct=$fake_pid")

pin 0 "$bin" bareproxy --upstream http://127.0.0.1:18000 --listen 127.0.0.1:18001 2>"$out/bareproxy.log" &
pids+=($!)
targets+=(--compare bareproxy=http://127.0.0.1:18001)
procs+=(--pid "bareproxy=$!")

if command -v nginx >/dev/null; then
	mkdir -p "$out/nginx"
	cat >"$out/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $PWD/$out/nginx/nginx.pid;
error_log $PWD/$out/nginx/error.log warn;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path $PWD/$out/nginx/body;
	proxy_temp_path $PWD/$out/nginx/proxy;
	upstream backend { server 127.0.0.1:18000; keepalive 256; }
	server {
		listen 127.0.0.1:18002 reuseport;
		keepalive_requests 1000000;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffering off;
			client_body_buffer_size 1m;
		}
	}
}
CONF
	pin 0 nginx -p "$PWD/$out/nginx" -c "$PWD/$out/nginx/nginx.conf" 2>"$out/nginx.log" &
	pids+=($!)
	targets+=(--compare nginx=http://127.0.0.1:18002)
	procs+=(--pid "nginx=$!")
else
	echo "nginx not installed: skipped (apt-get install -y nginx)" >&2
fi

if command -v haproxy >/dev/null; then
	cat >"$out/haproxy.cfg" <<CONF
global
	nbthread 1
	maxconn 4096
defaults
	mode http
	timeout connect 5s
	timeout client 60s
	timeout server 60s
	option http-keep-alive
frontend fe
	bind 127.0.0.1:18003
	default_backend be
backend be
	http-reuse always
	server s1 127.0.0.1:18000
CONF
	pin 0 haproxy -db -f "$out/haproxy.cfg" 2>"$out/haproxy.log" &
	pids+=($!)
	targets+=(--compare haproxy=http://127.0.0.1:18003)
	procs+=(--pid "haproxy=$!")
else
	echo "haproxy not installed: skipped (apt-get install -y haproxy)" >&2
fi

# Portkey's open-source gateway (Node), when installed: npm ci --prefix bench/portkey. It routes
# by headers, which every target receives (the others ignore them).
headers=()
portkey=bench/portkey/node_modules/@portkey-ai/gateway/build/start-server.js
if [[ -f $portkey ]] && command -v node >/dev/null; then
	pin 0 node "$portkey" --port=18004 --headless >"$out/portkey.log" 2>&1 &
	pids+=($!)
	targets+=(--compare portkey=http://127.0.0.1:18004)
	procs+=(--pid "portkey=$!")
	headers=(--header "x-portkey-provider: openai" --header "x-portkey-custom-host: http://127.0.0.1:18000/v1"
		--header "Authorization: Bearer unused")
else
	echo "Portkey not installed: skipped (npm ci --prefix bench/portkey)" >&2
fi

rm -f "$out"/state-*.db # every run starts from its config
cat >"$out/gateway.yaml" <<YAML
listen: "127.0.0.1:18080"
admin: {listen: "127.0.0.1:18081"}
state: {path: "$out/state-llmgate.db"}
models:
  - alias: bench-model
    versions:
      - version: v1
        backends:
          - {url: "http://127.0.0.1:18000", kind: vllm, model: bench-model}
YAML
pin 0 "$bin" serve --config "$out/gateway.yaml" >"$out/llmgate.out" 2>"$out/llmgate.log" &
pids+=($!)
targets+=(--compare llmgate=http://127.0.0.1:18080)
procs+=(--pid "llmgate=$!")

# The same gateway without drift statistics, to price them (issue #4: within 5 %).
sed -e 's/18080/18070/; s/18081/18071/; s/state-llmgate/state-nodrift/' "$out/gateway.yaml" >"$out/gateway-nodrift.yaml"
echo "drift: {off: true}" >>"$out/gateway-nodrift.yaml"
pin 0 "$bin" serve --config "$out/gateway-nodrift.yaml" >"$out/llmgate-nodrift.out" 2>"$out/llmgate-nodrift.log" &
pids+=($!)
targets+=(--compare llmgate-nodrift=http://127.0.0.1:18070)
procs+=(--pid "llmgate-nodrift=$!")

cat >"$out/gateway-full.yaml" <<YAML
listen: "127.0.0.1:18090"
admin: {listen: "127.0.0.1:18091"}
state: {path: "$out/state-full.db"}
models:
  - alias: bench-model
    versions:
      - version: v1
        backends:
          - {url: "http://127.0.0.1:18000", kind: vllm, model: bench-model}
    guard:
      pii: {prompt: redact, completion: redact, restore: true}
      safety: {prompt: block, completion: block}
    cache: {enabled: true}
# Sized so that peak RSS under max throughput fits issue #7's 64 MiB: a full cache holds its
# max_bytes of answers, so RSS is about the rest of the gateway plus max_bytes (the default,
# 256 MiB, would measure the cache, not the gateway). Without a memory limit Go lets the heap
# grow to twice what is live, a full cache included: the limit (the least allowed, cache plus
# 40 MiB) makes the collector run more often instead. A 16 MiB cache under the same limit left
# the collector no room once the cache and the log buffers were full (see RESULTS.md).
cache: {max_bytes: 8388608}
limits: {memory_bytes: 50331648}
YAML
pin 0 "$bin" serve --config "$out/gateway-full.yaml" >"$out/llmgate-full.out" 2>"$out/llmgate-full.log" &
pids+=($!)
targets+=(--compare llmgate-full=http://127.0.0.1:18090)
procs+=(--pid "llmgate-full=$!")
for port in 18001 18002 18003 18004 18070 18080 18090; do
	[[ " ${targets[*]} " == *":$port "* ]] && waitport $port
done

common=(--model bench-model --rounds "$ROUNDS" --duration "$DURATION" --warmup 1s --quiet "${procs[@]}" "${headers[@]}")
report=$out/report.txt
: >"$report"
# settle waits (up to 10 s) until no server process has used CPU for half a second: a server
# still working off the last comparison's backlog (Portkey, overloaded, keeps answering for
# seconds after its clients are gone) would take core 0 from the next comparison's targets.
settle() {
	local before now
	for _ in $(seq 20); do
		before=$(cpu_ticks)
		sleep 0.5
		now=$(cpu_ticks)
		[[ $now == "$before" ]] && return
	done
	echo "warning: the servers were still busy when the next comparison started" | tee -a "$report" >&2
}
cpu_ticks() { # the user+system ticks of every server process, summed
	local pid total=0
	for pid in "${pids[@]}"; do
		[[ -r /proc/$pid/stat ]] && total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
	done
	echo "$total"
}
run() { # run TITLE ARGS...: one comparison, printed and kept for RESULTS.md
	local title=$1; shift
	settle
	echo "== $title" | tee -a "$report"
	# A target that fails its check ends that comparison only, not the script.
	pin 1 "$bin" bench "${targets[@]}" "${common[@]}" "$@" 2>&1 | tee -a "$report" || true
	echo | tee -a "$report"
}
want chat && run "chat, 1 KiB prompt (10 % with PII), open loop at $RATE req/s" \
	--workload chat --prompt-bytes 1024 --pii-share 0.1 --rate "$RATE" --json "$out/chat-open.json" --svg "$out/chat-open.svg"
# Portkey answers streams to a custom host with a 500 ("Something went wrong"): left out there.
without_portkey() { # without_portkey NAME: drop the "--flag portkey=..." pair from array NAME
	local -n arr=$1
	local out=() x
	for x in "${arr[@]}"; do
		if [[ $x == portkey=* ]]; then unset 'out[-1]'; else out+=("$x"); fi
	done
	arr=("${out[@]}")
}
all_targets=("${targets[@]}") all_common=("${common[@]}")
without_portkey targets
without_portkey common
want stream && run "chat-stream, 1 KiB prompt, 16 events, open loop at 200 req/s" \
	--workload chat-stream --prompt-bytes 1024 --pii-share 0.1 --rate 200 --json "$out/stream-open.json"
targets=("${all_targets[@]}") common=("${all_common[@]}")
want closed && run "chat, 1 KiB prompt, closed loop with 32 connections (max throughput)" \
	--workload chat --prompt-bytes 1024 --rate 0 --connections 32 --json "$out/chat-closed.json" --svg "$out/chat-closed.svg"

# Cache hits: the same request over and over (--repeat-share 1) against llmgate-full, next to
# misses (unique prompts) and the backend alone, closed loop for the rate and open loop for the
# added latency.
if want cache; then
	hits=(--compare direct=http://127.0.0.1:18000 --compare llmgate-full-hit=http://127.0.0.1:18090)
	# Portkey has no cache to compare, and the backlog it builds under a closed loop would
	# disturb the runs after this one.
	without_portkey targets
	without_portkey common
	run "cache hits: one repeated 1 KiB chat request, closed loop with 32 connections" \
		--workload chat --prompt-bytes 1024 --rate 0 --connections 32 --repeat-share 1 --json "$out/cache-closed.json"
	targets=("${hits[@]}")
	procs=(--pid "direct=$fake_pid" --pid "llmgate-full-hit=$(pgrep -f "serve --config $out/gateway-full.yaml" | head -1)")
	common=(--model bench-model --rounds "$ROUNDS" --duration "$DURATION" --warmup 1s --quiet "${procs[@]}" "${headers[@]}")
	log=$out/llmgate-full.log
	mark=$(wc -l <"$log")
	run "cache hits: one repeated 1 KiB chat request, open loop at 1000 req/s" \
		--workload chat --prompt-bytes 1024 --rate 1000 --repeat-share 1 --json "$out/cache-open.json"
	targets=(--compare llmgate-full-miss=http://127.0.0.1:18090)
	full_pid=$(pgrep -f "serve --config $out/gateway-full.yaml" | head -1)
	common=(--model bench-model --rounds 1 --duration "$DURATION" --warmup 1s --quiet --pid "llmgate-full-miss=$full_pid")
	run "cache misses: unique 1 KiB chat requests, open loop at 1000 req/s" \
		--workload chat --prompt-bytes 1024 --rate 1000 --seed 7 --rounds 1 --json "$out/cache-miss-open.json"
	# Inside the gateway (its access log): how long a hit takes to serve against the backend
	# round trip a miss waits for (issue #7: a hit at least 5x faster than that round trip).
	values() { # values FIELD FILTER: FIELD of the new log lines matching FILTER, sorted
		tail -n +"$((mark + 1))" "$log" | grep -F "$2" | grep -o "\"$1\":[0-9.]*" | cut -d: -f2 | sort -n || true
	}
	rps() { # rps FILE TARGET: the throughput of TARGET in a --json report
		# The summaries come after the rounds: the last match is the median across rounds.
		awk -v t="\"$2\"," '$1 == "\"target\":" { on = $2 == t } on && $1 == "\"throughput_rps\":" { sub(",", "", $2); v = $2 } END { print v }' "$1"
	}
	pct() { awk -v p="$1" '{ v[NR] = $1 } END { if (NR) print v[int(p * (NR - 1)) + 1]; else print "-" }'; }
	hit_p50=$(values duration_ms '"cache":"hit"' | pct 0.5)
	up_p50=$(values upstream_ms '"cache":"miss"' | pct 0.5)
	{
		echo "== inside llmgate-full at 1000 req/s, from its access log (ms)"
		echo "hit: duration p50 $hit_p50, p99 $(values duration_ms '"cache":"hit"' | pct 0.99), $(values duration_ms '"cache":"hit"' | wc -l) requests"
		echo "miss: duration p50 $(values duration_ms '"cache":"miss"' | pct 0.5), p99 $(values duration_ms '"cache":"miss"' | pct 0.99); backend round trip (upstream_ms) p50 $up_p50, p99 $(values upstream_ms '"cache":"miss"' | pct 0.99), $(values upstream_ms '"cache":"miss"' | wc -l) requests"
		awk -v h="$hit_p50" -v u="$up_p50" 'BEGIN { if (h > 0) printf "backend round trip p50 / hit duration p50: %.1fx\n", u / h }'
		# Issue #6: the hit path sustains at least 5x the request rate of the miss path (the
		# closed-loop runs of this script: hits above, misses in the "closed" scenario, which must
		# be part of this run: an older chat-closed.json measured another build).
		if want closed && [[ -f $out/chat-closed.json ]]; then
			awk -v h="$(rps "$out/cache-closed.json" llmgate-full)" -v m="$(rps "$out/chat-closed.json" llmgate-full)" \
				'BEGIN { if (m > 0) printf "closed loop: hits %.0f req/s / misses %.0f req/s: %.1fx\n", h, m, h / m }'
		fi
		echo
	} | tee -a "$report"
fi

# Peak RSS under a 60-second max-throughput run of llmgate-full (issue #7: at most 64 MiB),
# unique cacheable prompts so that the cache fills and evicts throughout.
if want rss; then
	targets=(--compare llmgate-full=http://127.0.0.1:18090)
	procs=(--pid "llmgate-full=$(pgrep -f "serve --config $out/gateway-full.yaml" | head -1)")
	common=(--model bench-model --rounds 1 --duration "${RSS_DURATION:-60s}" --warmup 1s --quiet "${procs[@]}")
	run "chat, 1 KiB prompt, closed loop with 32 connections for ${RSS_DURATION:-60s}, llmgate-full alone (peak RSS)" \
		--workload chat --prompt-bytes 1024 --rate 0 --connections 32 --json "$out/rss.json"
fi

if [[ ${RESULTS:-0} == 1 ]]; then
	# Replace the generated section of RESULTS.md (between the markers) with this run.
	{
		echo "<!-- generated by bench/run.sh: begin -->"
		echo "Generated $(date -u +%Y-%m-%dT%H:%MZ) by \`RESULTS=1 DURATION=$DURATION ROUNDS=$ROUNDS RATE=$RATE bench/run.sh\`"
		echo "on $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr), $(go version | cut -d' ' -f3),"
		proxies=()
		command -v nginx >/dev/null && proxies+=("$(nginx -v 2>&1 | cut -d' ' -f3)")
		command -v haproxy >/dev/null && proxies+=("$(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3)")
		echo "${proxies[*]:-without nginx and haproxy}."
		echo
		echo '```'
		cat "$report"
		echo '```'
		echo "<!-- generated by bench/run.sh: end -->"
	} >"$out/generated.md"
	awk -v gen="$out/generated.md" '
		/<!-- generated by bench\/run.sh: begin -->/ { while ((getline line < gen) > 0) print line; skip = 1; next }
		/<!-- generated by bench\/run.sh: end -->/ { skip = 0; next }
		!skip { print }' bench/RESULTS.md >"$out/RESULTS.md.new"
	grep -q 'generated by bench/run.sh: begin' "$out/RESULTS.md.new" || cat "$out/generated.md" >>"$out/RESULTS.md.new"
	mv "$out/RESULTS.md.new" bench/RESULTS.md
	echo "bench/RESULTS.md updated"
fi
