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

gateway_config() { # gateway_config NAME PORT BACKEND_PORT GUARD CACHE: write $out/NAME.yaml, an
	# llmgate config serving bench-model from the backend on BACKEND_PORT; GUARD=1 adds PII
	# redaction with restore and safety blocking both ways, CACHE=1 the response cache, as
	# llmgate-full in run.sh (with either, its cache and memory limits)
	local name=$1 port=$2 backend=$3 guard=$4 cache=$5
	{
		echo "listen: \"127.0.0.1:$port\""
		echo "admin: {listen: \"127.0.0.1:$((port + 1))\"}"
		echo "state: {path: \"$out/state-$name.db\"}"
		echo "models:"
		echo "  - alias: bench-model"
		echo "    versions:"
		echo "      - version: v1"
		echo "        backends:"
		echo "          - {url: \"http://127.0.0.1:$backend\", kind: vllm, model: bench-model}"
		if ((guard)); then
			echo "    guard:"
			echo "      pii: {prompt: redact, completion: redact, restore: true}"
			echo "      safety: {prompt: block, completion: block}"
		fi
		if ((cache)); then
			echo "    cache: {enabled: true}"
		fi
		if ((guard || cache)); then
			echo "cache: {max_bytes: 8388608}"
			echo "limits: {memory_bytes: 50331648}"
		fi
	} >"$out/$name.yaml"
}
