package main

// The cluster commands: slaves, apps and stats.

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// --- slaves, apps, stats

var slaveColumns = []column{
	field("ID", "id"),
	field("NAME", "name"),
	field("HOST", "host"),
	field("OS", "os"),
	field("ARCH", "arch"),
	field("CORES", "cores"),
	field("CONCURRENCY", "concurrency"),
	field("RUNNING", "running"),
	field("DONE", "done"),
	field("FAILED", "failed"),
	field("KINDS", "kinds"),
	field("CONNECTED", "connected_at"),
}

var appColumns = []column{
	field("APP", "app", "name"),
	field("CONNECTED", "connected"),
	field("PUSHED", "pushed"),
	field("PENDING", "pending"),
	field("RUNNING", "running"),
	field("UNFINISHED", "unfinished"),
	field("DONE", "done"),
	field("FAILED", "failed"),
	field("ACKED", "acked"),
	field("UNNOTIFIED", "pending_notifications"),
}

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
	var method string
	switch {
	case len(operands) == 0:
		method = "Slaves.List"
	case len(operands) == 2 && operands[0] == "get":
		method = "Slaves.Get"
	case len(operands) == 2 && operands[0] == "drain":
		method = "Slaves.Drain"
	default:
		return c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.close()
	var params any
	if len(operands) == 2 {
		params = map[string]any{"id": operands[1]}
	}
	raw, err := cl.call(ctx, method, params, 0)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, raw)
	}
	switch method {
	case "Slaves.Drain":
		_, err := fmt.Fprintf(stdout, "slave %s draining\n", operands[1])
		return err
	case "Slaves.Get":
		return printResultFields(stdout, method, raw)
	}
	return printListTable(stdout, method, raw, "slaves", slaveColumns)
}

func runApps(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("apps", "[flags]",
		`Lists the application ids the master knows, with their task counts
(Apps.List).`, stderr)
	return listCommand(ctx, c, args, stdout, "Apps.List", "apps", appColumns)
}

func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("stats", "[flags]",
		`Shows the master's statistics (Stats.Summary): tasks by state, connected
slaves, throughput. Nested fields print as dotted names.`, stderr)
	raw, err := callWithoutOperands(ctx, c, args, "Stats.Summary")
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, raw)
	}
	return printResultFields(stdout, "Stats.Summary", raw)
}

// listCommand runs a command without operands that prints the list in
// field of method's result as a table.
func listCommand(ctx context.Context, c *clientFlags, args []string, stdout io.Writer, method, listKey string, cols []column) error {
	raw, err := callWithoutOperands(ctx, c, args, method)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, raw)
	}
	return printListTable(stdout, method, raw, listKey, cols)
}
