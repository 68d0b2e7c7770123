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

# The setup attribute.sh and latency.sh share. They need $bin (the llmgate binary), $out and
# a pids array that the caller's EXIT trap kills, and they fill the caller's associative
# arrays pid and port (declare -A pid port) by target name.

start_backend() { # start_backend PORT: the simulated vLLM serving bench-model on core 0; backend=its pid
	pin 0 "$bin" fakellm --flavor vllm --model bench-model --listen "127.0.0.1:$1" --output-tokens 16 2>"$out/fakellm.log" &
	pids+=($!)
	backend=$!
	waitport "$1"
}

start_bareproxy() { # start_bareproxy PORT BACKEND_PORT: the bare fasthttp proxy on core 0
	pin 0 "$bin" bareproxy --upstream "http://127.0.0.1:$2" --listen "127.0.0.1:$1" 2>"$out/bareproxy.log" &
	pids+=($!)
	pid[bareproxy]=$! port[bareproxy]=$1
	waitport "$1"
}

start_variants() { # start_variants PORT BACKEND_PORT: llmgate with its defaults, the cache only,
	# the guard only and both (llmgate-full; see gateway_config), on PORT, PORT+10, PORT+20, PORT+30
	local p=$1 v name guard cache
	for v in "defaults 0 0" "cache 0 1" "guard 1 0" "full 1 1"; do
		read -r name guard cache <<<"$v"
		gateway_config "$name" "$p" "$2" "$guard" "$cache"
		pin 0 "$bin" serve --config "$out/$name.yaml" >"$out/$name.out" 2>"$out/$name.log" &
		pids+=($!)
		pid[$name]=$! port[$name]=$p
		waitport "$p"
		p=$((p + 10))
	done
}
