// Command hostile is a WASI test module for the sandbox: the payload on
// stdin picks what it does, from a plain echo to attacks on the host it
// must not get away with. Built with GOOS=wasip1 GOARCH=wasm by the tests.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
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
	cmd, arg, _ := strings.Cut(string(in), " ")
	switch cmd {
	case "echo":
		os.Stdout.WriteString(arg)
	case "loop":
		// A loop with no calls, so nothing but the runtime can stop it.
		for i := 0; ; i++ {
			if i < 0 {
				break
			}
		}
	case "spin":
		// Loops over memory and nothing else, for the benchmarks: the
		// number of primes below arg million, by a sieve of Eratosthenes.
		n, _ := strconv.Atoi(arg)
		fmt.Print(sieve(n * 1000000))
	case "alloc":
		// Touch every chunk so the memory really grows.
		var keep [][]byte
		for {
			b := make([]byte, 16<<20)
			for i := range b {
				b[i] = 1
			}
			keep = append(keep, b)
			fmt.Fprintf(os.Stderr, "allocated %d MiB\n", 16*len(keep))
		}
	case "open":
		if b, err := os.ReadFile("/etc/passwd"); err != nil {
			fmt.Println("open failed:", err)
		} else {
			fmt.Printf("open succeeded: %s\n", b)
		}
		if es, err := os.ReadDir("/"); err != nil {
			fmt.Println("readdir failed:", err)
		} else {
			fmt.Println("readdir succeeded:", len(es), "entries")
		}
	case "dial":
		if c, err := net.Dial("tcp", "127.0.0.1:"+arg); err != nil {
			fmt.Println("dial failed:", err)
		} else {
			c.Close()
			fmt.Println("dial succeeded")
		}
	case "env":
		fmt.Printf("%d variables: %q\n", len(os.Environ()), os.Environ())
	case "flood":
		line := []byte(strings.Repeat("x", 1023) + "\n")
		for {
			os.Stdout.Write(line)
		}
	case "exit":
		n, _ := strconv.Atoi(arg)
		fmt.Fprintln(os.Stderr, "exiting with", n)
		os.Exit(n)
	case "panic":
		panic("hostile module panics")
	case "args":
		fmt.Printf("%q", os.Args)
	case "stderr":
		for i := 0; i < 10000; i++ {
			fmt.Fprintf(os.Stderr, "line %d of stderr\n", i)
		}
		fmt.Fprintln(os.Stderr, "the last line")
		os.Exit(2)
	case "sleep":
		time.Sleep(time.Hour)
	case "time":
		t0 := time.Now()
		time.Sleep(time.Millisecond)
		fmt.Println(t0.Year() > 2000, time.Since(t0) >= time.Millisecond)
	case "rand":
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			fmt.Println("rand failed:", err)
			os.Exit(1)
		}
		fmt.Print(hex.EncodeToString(b))
	default:
		fmt.Fprintf(os.Stderr, "unknown behaviour %q\n", cmd)
		os.Exit(64)
	}
}

// sieve counts the primes below n.
func sieve(n int) int {
	composite := make([]bool, n)
	count := 0
	for i := 2; i < n; i++ {
		if composite[i] {
			continue
		}
		count++
		for j := i * i; j < n; j += i {
			composite[j] = true
		}
	}
	return count
}
