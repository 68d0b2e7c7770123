#!/usr/bin/env bash
# Where CPU per request goes at a moderate open-loop rate (issue 7's "CPU per request at 2,000
# req/s"): each server alone (the simulated backend, the bare proxy, llmgate with its defaults,
# llmgate-full) under 1 KiB chat requests at RATE, first without perf for CPU per request from
# /proc, then under perf for context switches and syscalls per request and the share of CPU
# samples in the Go runtime's sysmon thread. Needs perf (Debian: linux-perf) with tracepoints.
#
#   bench/wakeups.sh                   # about a minute
#   RATE=500 DURATION=10s bench/wakeups.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf not installed (apt-get install -y linux-perf)" >&2; exit 1; }
out=bench/out/wakeups
mkdir -p "$out"
rm -f "$out"/state-*.db
go build -o "$out/llmgate" ./cmd/llmgate
bin=$out/llmgate
rate=${RATE:-2000}

. bench/lib.sh # pin, waitport, gateway_config
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

pin 0 "$bin" fakellm --flavor vllm --model bench-model --listen 127.0.0.1:18400 --output-tokens 16 2>"$out/fakellm.log" &
pids+=($!)
declare -A pid=([direct]=$!) port=([direct]=18400)
waitport 18400
pin 0 "$bin" bareproxy --upstream http://127.0.0.1:18400 --listen 127.0.0.1:18401 2>"$out/bareproxy.log" &
pids+=($!)
pid[bareproxy]=$! port[bareproxy]=18401
waitport 18401

p=18410
for name in llmgate llmgate-full; do
	full=0
	[[ $name == llmgate-full ]] && full=1
	gateway_config "$name" "$p" 18400 "$full" "$full"
	pin 0 "$bin" serve --config "$out/$name.yaml" >"$out/$name.out" 2>"$out/$name.log" &
	pids+=($!)
	pid[$name]=$! port[$name]=$p
	waitport "$p"
	p=$((p + 10))
done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # user + system clock ticks
hz=$(getconf CLK_TCK)
load() { # load NAME: RATE req/s of unique 1 KiB chat prompts for DURATION; prints the requests
	(pin 1 "$bin" bench --compare "x=http://127.0.0.1:${port[$1]}" --model bench-model --rounds 1 --quiet \
		--workload chat --prompt-bytes 1024 --rate "$rate" --duration "${DURATION:-5s}" --warmup 0s 2>&1) | awk '$1 == "x" { print $8 }'
}
events=task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep,syscalls:sys_enter_epoll_pwait
count() { awk -v e="$2" '$2 == e { gsub(",", "", $1); print $1 }' "$1"; }
printf '%-13s %9s %10s %12s %12s %8s %11s %10s %14s\n' target requests "CPU us/req" "ctx sw/req" "syscall/req" "futex" "nanosleep" "sysmon %" "sysmon us/req"
for name in direct bareproxy llmgate llmgate-full; do
	(pin 1 "$bin" bench --compare "x=http://127.0.0.1:${port[$name]}" --model bench-model --rounds 1 --quiet \
		--workload chat --prompt-bytes 1024 --rate "$rate" --duration 1s >/dev/null 2>&1) # warm up
	t0=$(ticks "${pid[$name]}")
	n=$(load "$name")
	t1=$(ticks "${pid[$name]}")
	perf stat -e "$events" -p "${pid[$name]}" -o "$out/stat-$name.txt" &
	stat=$!
	perf record -e cpu-clock -F 4999 -g -p "${pid[$name]}" -o "$out/perf-$name.data" 2>"$out/perf-$name.log" &
	record=$!
	sleep 0.2 # perf attaches
	m=$(load "$name")
	kill -INT "$stat" "$record"
	wait "$stat" "$record" || true
	sysmon=$(perf report -i "$out/perf-$name.data" --children --sort sym -g none 2>/dev/null |
		awk '$NF == "runtime.sysmon" { sub("%", "", $1); print $1 }')
	f=$out/stat-$name.txt
	awk -v name="$name" -v n="$n" -v m="$m" -v hz="$hz" -v t=$((t1 - t0)) -v cs="$(count "$f" context-switches)" \
		-v sc="$(count "$f" raw_syscalls:sys_enter)" -v fu="$(count "$f" syscalls:sys_enter_futex)" \
		-v ns="$(count "$f" syscalls:sys_enter_nanosleep)" -v sm="${sysmon:-0}" \
		'BEGIN {
			cpu = t / hz * 1e6 / n
			printf "%-13s %9d %10.1f %12.1f %12.1f %8.2f %11.2f %10.1f %14.1f\n", name, n, cpu, cs / m, sc / m, fu / m, ns / m, sm, cpu * sm / 100
		}'
done
echo "(per request: context switches and syscalls (futex and nanosleep among them) of the server while perf counted;"
echo " sysmon %: the share of its CPU samples under runtime.sysmon, the Go runtime's monitor thread, and that share in us)"
