# Shell functions the bench scripts share; source it after setting out (the logs' folder).

pin() { # pin CORE CMD...: run on one core, one P (exec: a backgrounded call's pid is the process;
	# call it in a subshell, "(pin 1 cmd)", to wait for it in the foreground)
	local core=$1; shift
	if command -v taskset >/dev/null && (($(nproc) > 1)); then
		GOMAXPROCS=1 exec taskset -c "$core" "$@"
	else
		GOMAXPROCS=1 exec "$@"
	fi
}

waitport() { # waitport PORT: until something listens on 127.0.0.1:PORT, at most 10 s
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done
	echo "nothing listens on port $1; see $out/*.log" >&2
	exit 1
}
