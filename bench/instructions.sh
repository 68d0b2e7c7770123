#!/usr/bin/env bash
# Instructions per benchmark operation, from valgrind's cachegrind: exact and the same on every
# run, where wall-clock time on a shared machine moves by 10-40 %. It runs the benchmark for N1
# and for N2 iterations and divides the difference by N2-N1, so set-up cancels out. It prints
# the total, the total without the Go runtime's scheduler, GC and locks (which spin differently
# from run to run under valgrind: trust it less), and the instructions in llmgate's own
# functions (the steadiest figure). TOP=1 also lists the top functions of the N2 run.
#
#   bench/instructions.sh ./guard '^BenchmarkGuard$/^4KiB$/^clean$'          # 2000 and 6000 iterations
#   bench/instructions.sh ./gateway '^BenchmarkPipelineFull$' 1000 3000
set -euo pipefail
pkg=$1 re=$2 n1=${3:-2000} n2=${4:-6000}
command -v valgrind >/dev/null || { echo "instructions.sh needs valgrind (apt-get install valgrind)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
bin=$dir/pkg.test
(cd "$pkg" && go test -c -o "$bin" .)
cd "$pkg"
count() { # count N: "total without-scheduler ours" for a run of N iterations
	local f=$bin.cg.$1
	valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$f" "$bin" -test.run xxx -test.bench "$re" \
		-test.benchtime "${1}x" >/dev/null 2>&1
	# %.0f, not %d: mawk's %d stops at 2^31.
	cg_annotate --auto=no --threshold=0 "$f" 2>/dev/null | awk '
		/PROGRAM TOTALS/ { v = $1; gsub(",", "", v); tot = v }
		/^ *[0-9,]+ \(/ && /:/ {
			v = $1; gsub(",", "", v)
			if (index($0, "llmgate/llmgate")) ours += v
			if (index($0, "/src/runtime/") && $0 ~ /runtime\/(proc|lock_spinbit|time|netpoll|sema|chan|select|mgc|mbitmap|preempt|stack|signal_unix|sys_linux_amd64|asm_amd64|os_linux|runtime2|lock_futex|mprof|traceback|symtab|cgocall|mheap|mcache|mcentral|mspanset|mstats|panic)/) sched += v
		}
		END { printf "%.0f %.0f %.0f\n", tot, tot - sched, ours }'
}
read -r a1 a2 a3 < <(count "$n1")
read -r b1 b2 b3 < <(count "$n2")
n=$((n2 - n1))
echo "$re: instructions/op: total $(((b1 - a1) / n)), without the runtime scheduler/GC $(((b2 - a2) / n)), in llmgate code $(((b3 - a3) / n))"
if [ -n "${TOP:-}" ]; then
	cg_annotate --auto=no --threshold=0.5 "$bin.cg.$n2" 2>/dev/null | sed -n '/PROGRAM TOTALS/,$p' | head -40
fi
