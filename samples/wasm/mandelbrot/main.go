// Command mandelbrot is the demo's tile kernel as a WASI command module:
// a tile's payload (mandelbrot.Tile.Payload) on stdin, its RGBA pixels on
// stdout. It is the very code the native slaves run (mandelbrot.Render),
// compiled for wasip1, so the image is the same whichever ran a tile.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/anthill-project/anthill/samples/mandelbrot"
)

func main() {
	payload, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	out, err := mandelbrot.Render(context.Background(), payload)
	if err != nil {
		fail(err)
	}
	if _, err := os.Stdout.Write(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
