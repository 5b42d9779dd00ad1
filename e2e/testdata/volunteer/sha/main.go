// Command sha is the WASI module of the browser volunteer's tests: it
// prints the hex SHA-256 of its stdin. An input of "exit N" makes it
// write to stderr and exit with code N, "spin" loops until it is
// stopped, "busy N" works for N milliseconds of the clock and says so,
// "big N" writes N bytes, to test the output bound, and "alloc N" holds N
// MiB of heap, to test the memory bound.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading stdin:", err)
		os.Exit(1)
	}
	s := string(in)
	switch {
	case strings.HasPrefix(s, "exit "):
		code, _ := strconv.Atoi(strings.TrimPrefix(s, "exit "))
		fmt.Fprintf(os.Stderr, "asked to exit with %d\n", code)
		os.Exit(code)
	case s == "spin":
		for n := 0; ; n++ {
			if n < 0 {
				fmt.Println(n) // never: keeps the loop from being optimised away
			}
		}
	case strings.HasPrefix(s, "busy "):
		ms, _ := strconv.Atoi(strings.TrimPrefix(s, "busy "))
		for end := time.Now().Add(time.Duration(ms) * time.Millisecond); time.Now().Before(end); {
		}
		fmt.Printf("busy for %d ms", ms)
		return
	case strings.HasPrefix(s, "alloc "):
		mib, _ := strconv.Atoi(strings.TrimPrefix(s, "alloc "))
		var held [][]byte
		for range mib / 16 {
			b := make([]byte, 16<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			held = append(held, b)
		}
		fmt.Printf("holding %d MiB", len(held)*16)
		return
	case strings.HasPrefix(s, "big "):
		n, _ := strconv.Atoi(strings.TrimPrefix(s, "big "))
		os.Stdout.Write(make([]byte, n))
		return
	}
	sum := sha256.Sum256(in)
	fmt.Print(hex.EncodeToString(sum[:]))
}
