#!/usr/bin/env bash
# Where llmgate-full's CPU goes: the bare proxy and llmgate with its defaults, with the response
# cache only, with the guard only and with both (llmgate-full of run.sh), each driven alone by a
# closed loop of unique 1 KiB chat requests, and the user and system CPU per request each
# process used, read from /proc. System time rises as throughput falls on the shared core (the
# backend's own CPU per request rises with it), so user time is a variant's own cost.
#
#   bench/attribute.sh                 # about a minute
#   DURATION=10s bench/attribute.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/attribute
mkdir -p "$out"
rm -f "$out"/state-*.db
go build -o "$out/llmgate" ./cmd/llmgate
bin=$out/llmgate

. bench/lib.sh # pin, waitport, start_backend, start_bareproxy, start_variants
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
declare -A pid port

start_backend 18500
start_bareproxy 18501 18500
start_variants 18510 18500

ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # user and system clock ticks
hz=$(getconf CLK_TCK)
printf '%-10s %9s %14s %14s %18s\n' variant requests "user us/req" "system us/req" "backend us/req"
for name in bareproxy defaults cache guard full; do
	url=http://127.0.0.1:${port[$name]}
	load=(--compare "x=$url" --model bench-model --rounds 1 --quiet --workload chat --prompt-bytes 1024 --rate 0 --connections 32)
	(pin 1 "$bin" bench "${load[@]}" --duration 2s >/dev/null 2>&1) # warm up; fills the cache
	read -r u0 s0 < <(ticks "${pid[$name]}")
	read -r bu0 bs0 < <(ticks "$backend")
	n=$( (pin 1 "$bin" bench "${load[@]}" --duration "${DURATION:-6s}" 2>&1) | awk '$1 == "x" { print $8 }')
	read -r u1 s1 < <(ticks "${pid[$name]}")
	read -r bu1 bs1 < <(ticks "$backend")
	awk -v name="$name" -v n="$n" -v hz="$hz" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v b=$((bu1 + bs1 - bu0 - bs0)) \
		'BEGIN { printf "%-10s %9d %14.1f %14.1f %18.1f\n", name, n, u / hz * 1e6 / n, s / hz * 1e6 / n, b / hz * 1e6 / n }'
done
