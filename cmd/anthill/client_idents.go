package main

// The credential commands: apps enroll|revoke|credentials and volunteers.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/anthill-project/anthill/jsonrpc"
)

// runAppsCredential runs "apps enroll|revoke|credentials"; runApps hands
// it every operand list that starts with one of those verbs.
func runAppsCredential(ctx context.Context, stdout io.Writer, c *clientFlags, operands []string) error {
	switch {
	case len(operands) == 2 && operands[0] == "enroll":
		raw, err := c.callOnce(ctx, "Apps.Enroll", jsonrpc.AppParams{App: operands[1]})
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(stdout, raw)
		}
		var res jsonrpc.AppToken
		if err := json.Unmarshal(raw, &res); err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n# app %s enrolled; the token is shown once: give it to the app (appnode.Options.Token)\n", res.Token, fmtText(res.App))
		return err
	case len(operands) == 2 && operands[0] == "revoke":
		raw, err := c.callOnce(ctx, "Apps.Revoke", jsonrpc.AppParams{App: operands[1]})
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(stdout, raw)
		}
		_, err = fmt.Fprintf(stdout, "app %s revoked\n", fmtText(operands[1]))
		return err
	case len(operands) == 1 && operands[0] == "credentials":
		return showCall(ctx, stdout, c, "Apps.Credentials", nil, func(w io.Writer, l *jsonrpc.AppCredentialList) error {
			rows := make([][]string, len(l.Credentials))
			for i := range l.Credentials {
				a := &l.Credentials[i]
				rows[i] = []string{fmtText(a.App), fmtTime(&a.EnrolledAt)}
			}
			return printTable(w, []string{"APP", "ENROLLED"}, rows)
		})
	}
	return c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
}

func runVolunteers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("volunteers", "[flags] [list | enroll NAME | revoke NAME]",
		`Manages volunteer identities. "list" (the default) shows every identity:
how it was enrolled, when it was last seen and its live sessions
(Volunteers.List). "enroll NAME" creates the identity NAME and prints its
token once, for anthill slave --token (Volunteers.Enroll; enrolling a name
again replaces its token). "revoke NAME" revokes it: its slaves are
disconnected at once and their tasks re-queued at no attempt cost
(Volunteers.Revoke).`, stderr)
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(operands) == 0 || len(operands) == 1 && operands[0] == "list":
		return showCall(ctx, stdout, c, "Volunteers.List", nil, printVolunteers)
	case len(operands) == 2 && operands[0] == "enroll":
		raw, err := c.callOnce(ctx, "Volunteers.Enroll", jsonrpc.VolunteerParams{Name: operands[1]})
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(stdout, raw)
		}
		var res jsonrpc.VolunteerToken
		if err := json.Unmarshal(raw, &res); err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n# volunteer %s enrolled; the token is shown once: anthill slave --token TOKEN\n", res.Token, fmtText(res.Name))
		return err
	case len(operands) == 2 && operands[0] == "revoke":
		raw, err := c.callOnce(ctx, "Volunteers.Revoke", jsonrpc.VolunteerParams{Name: operands[1]})
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(stdout, raw)
		}
		_, err = fmt.Fprintf(stdout, "volunteer %s revoked\n", fmtText(operands[1]))
		return err
	}
	return c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
}

func printVolunteers(w io.Writer, l *jsonrpc.VolunteerList) error {
	rows := make([][]string, len(l.Volunteers))
	for i := range l.Volunteers {
		v := &l.Volunteers[i]
		rows[i] = []string{fmtText(v.Name), v.How, fmtTime(&v.EnrolledAt), fmtTime(v.LastSeen), fmtList(v.Sessions)}
	}
	return printTable(w, []string{"NAME", "HOW", "ENROLLED", "LAST SEEN", "SESSIONS"}, rows)
}
