package main

import (
	"io"

	"github.com/llmgate/llmgate/bench/load"
)

func runBench(args []string, stdout, stderr io.Writer) int {
	return load.Main(args, stdout, stderr)
}
