// Command liar is a volunteer that lies: a real slave (the slave package,
// the real protocol) whose sha256 handler returns a wrong digest with the
// probability -lie, drawn per task; a wrong digest is the same for the
// same payload, as saboteurs who collude would make it. Its echo of a
// number adds -echo-add to it, as a machine that rounds differently
// would. The trust tests run it beside stock slaves; it is never built
// into Anthill.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/anthill-project/anthill/sandbox"
	"github.com/anthill-project/anthill/slave"
)

func main() {
	master := flag.String("master", "", "the master's URL")
	name := flag.String("name", "liar", "the volunteer's name")
	token := flag.String("token", "", "its token")
	lie := flag.Float64("lie", 1, "the probability of a wrong result")
	add := flag.Float64("echo-add", 0, "an echo of a number returns it plus this: a CPU that rounds differently")
	flag.Parse()
	reg := sandbox.NewRegistry()
	reg.Register("echo", func(_ context.Context, payload []byte) ([]byte, error) {
		x, err := strconv.ParseFloat(string(payload), 64)
		if err != nil {
			return payload, nil
		}
		return strconv.AppendFloat(nil, x+*add, 'g', -1, 64), nil
	})
	reg.Register("sha256", func(_ context.Context, payload []byte) ([]byte, error) {
		sum := sha256.Sum256(payload)
		if rand.Float64() < *lie {
			sum[0] ^= 0xff
		}
		return []byte(hex.EncodeToString(sum[:])), nil
	})
	s, err := slave.New(slave.Options{
		Master: *master, Name: *name, Token: *token, Registry: reg, Concurrency: 2, Grace: -1,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "liar:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "liar:", err)
		os.Exit(1)
	}
}
