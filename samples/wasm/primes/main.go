// Command primes is samples/primes as a WASI command module: "LO HI" on
// stdin, the count of primes in [LO, HI) on stdout.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/anthill-project/anthill/samples/primes"
)

func main() {
	in, err := io.ReadAll(io.LimitReader(os.Stdin, 128))
	if err != nil {
		fail(err)
	}
	out, err := primes.Handler(context.Background(), in)
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "primes:", err)
	os.Exit(1)
}
