// Command goecho is the smallest useful Go WASI module: it copies stdin to
// stdout. The benchmarks measure the per-task cost of a Go module with it.
package main

import (
	"io"
	"os"
)

func main() {
	if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(1)
	}
}
