// Package wasm holds the sample WASM kernels: Go programs that run as
// WASI preview 1 command modules on any Anthill slave or browser tab,
// under the contract every module follows: the task's payload on stdin,
// the result on stdout, exit 0 for success, anything else an error
// (stderr's tail says why).
//
// The prime counter is written twice, in Go (primes/) and in C
// (c/primes.c), to show that the contract is the language's stdin and
// stdout, nothing of Anthill's.
//
// `go generate ./samples/wasm` builds them into this directory
// (mandelbrot.wasm, primes.wasm, primes-c.wasm; never committed). Build and
// BuildC are what the tests and `anthill demo --wasm` call, so a module is
// always built from the source beside it.
package wasm

//go:generate env GOOS=wasip1 GOARCH=wasm go build -trimpath -o mandelbrot.wasm ./mandelbrot
//go:generate env GOOS=wasip1 GOARCH=wasm go build -trimpath -o primes.wasm ./primes
//go:generate clang --target=wasm32-wasi -O2 -o primes-c.wasm c/primes.c
