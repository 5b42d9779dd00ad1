package main

// The cluster commands: slaves, apps and stats.

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/anthill-project/anthill/jsonrpc"
)

func runSlaves(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("slaves", "[flags] [get ID | drain ID]",
		`Lists the connected slave sessions (Slaves.List). "get ID" shows one
(Slaves.Get); "drain ID" stops dispatching to it, letting what it runs
finish (Slaves.Drain). ID is the session id of the first column: a slave
that reconnects gets a new one.`, stderr)
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(operands) == 0:
		return showCall(ctx, stdout, c, "Slaves.List", nil, printSlaves)
	case len(operands) == 2 && operands[0] == "get":
		return showCall(ctx, stdout, c, "Slaves.Get", jsonrpc.SessionParams{ID: operands[1]}, printSlave)
	case len(operands) == 2 && operands[0] == "drain":
		raw, err := c.callOnce(ctx, "Slaves.Drain", jsonrpc.SessionParams{ID: operands[1]})
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(stdout, raw)
		}
		_, err = fmt.Fprintf(stdout, "slave %s draining\n", operands[1])
		return err
	}
	return c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
}

func runApps(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("apps", "[flags] [enroll APP | revoke APP | credentials | configure APP [replicas=N] [quorum=M] [adaptive=true|false] [validator=HASH]]",
		`Lists the application ids the master knows, with their task counts
(Apps.List). "enroll APP" issues the token app APP connects with and prints
it once (Apps.Enroll; enrolling again replaces it); "revoke APP" forgets it
and disconnects the app, whose tasks stay (Apps.Revoke); "credentials"
lists the apps holding a token (Apps.Credentials). "configure APP" sets the
app's defaults for the tasks it submits from then on and prints them
(Apps.Configure): replicas=N runs each task as N copies on distinct
volunteers, quorum=M accepts the result M of them agree on (default a
majority), adaptive=true runs a trusted volunteer's task as one copy,
spot-checked, validator=HASH names an uploaded module that says whether two
results agree (docs/TRUST.md).`, stderr)
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(operands) > 0 {
		return runAppsCredential(ctx, stdout, c, operands)
	}
	return showCall(ctx, stdout, c, "Apps.List", nil, printApps)
}

func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("stats", "[flags]",
		`Shows the master's statistics (Stats.Summary): tasks by state, connected
slaves, throughput. Nested fields print as dotted names.`, stderr)
	if err := c.parseNone(args); err != nil {
		return err
	}
	return showCall(ctx, stdout, c, "Stats.Summary", nil, printSummary)
}
