package main

// The credential commands: apps enroll|revoke|credentials and volunteers.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
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
	case len(operands) >= 2 && operands[0] == "configure":
		p, err := appConfigParams(c, operands[1], operands[2:])
		if err != nil {
			return err
		}
		return showCall(ctx, stdout, c, "Apps.Configure", p, func(w io.Writer, a *jsonrpc.AppConfig) error {
			return printFields(w, []field{{"app", fmtText(a.App)}, {"replicas", fmt.Sprint(a.Replicas)},
				{"quorum", fmt.Sprint(a.Quorum)}, {"adaptive", fmt.Sprint(a.Adaptive)}, {"validator", fmtText(a.Validator)},
				{"weight", fmt.Sprint(a.Weight)}})
		})
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
	c := newClientFlags("volunteers", "[flags] [list | get NAME | enroll NAME | revoke NAME]",
		`Manages volunteer identities. "list" (the default) shows every identity:
how it was enrolled, when it was last seen, its live sessions, its results
that quorums judged valid and invalid, whether an app trusts it and its
credit in CPU seconds (Volunteers.List). "get NAME" shows one, with its
record per app (Volunteers.Get). "enroll NAME" creates the identity NAME and prints its
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
	case len(operands) == 2 && operands[0] == "get":
		return showCall(ctx, stdout, c, "Volunteers.Get", jsonrpc.VolunteerParams{Name: operands[1]}, printVolunteer)
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
		rows[i] = []string{fmtText(v.Name), v.How, fmtEnrolled(v), fmtTime(v.LastSeen), fmtList(v.Sessions),
			fmt.Sprint(v.ValidResults), fmt.Sprint(v.InvalidResults), fmt.Sprint(v.Trusted), fmtCredit(v.Credit)}
	}
	return printTable(w, []string{"NAME", "HOW", "ENROLLED", "LAST SEEN", "SESSIONS", "VALID", "INVALID", "TRUSTED", "CREDIT"}, rows)
}

// fmtEnrolled is when v was enrolled; "-" for a volunteer of an open
// master, which has a record and no enrollment.
func fmtEnrolled(v *jsonrpc.Volunteer) string {
	if v.EnrolledAt.IsZero() {
		return "-"
	}
	return fmtTime(&v.EnrolledAt)
}

func fmtCredit(c float64) string { return strconv.FormatFloat(c, 'f', 3, 64) }

func printVolunteer(w io.Writer, v *jsonrpc.Volunteer) error {
	if err := printVolunteers(w, &jsonrpc.VolunteerList{Volunteers: []jsonrpc.Volunteer{*v}}); err != nil {
		return err
	}
	if len(v.Apps) == 0 {
		return nil
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	rows := make([][]string, len(v.Apps))
	for i, a := range v.Apps {
		rows[i] = []string{fmtText(a.App), fmt.Sprint(a.ValidResults), fmt.Sprint(a.InvalidResults),
			fmt.Sprintf("%d/%d", a.Streak, a.Need), fmt.Sprint(a.Trusted), fmt.Sprint(a.Suspect), fmtCredit(a.Credit), fmtCredit(a.PendingCredit)}
	}
	return printTable(w, []string{"APP", "VALID", "INVALID", "STREAK", "TRUSTED", "SUSPECT", "CREDIT", "PENDING"}, rows)
}

// appConfigParams reads "configure APP" settings: replicas=N, quorum=M,
// adaptive=true|false, validator=HASH (empty: none), weight=W; the ones left out
// keep their values.
func appConfigParams(c *clientFlags, app string, settings []string) (jsonrpc.AppConfigParams, error) {
	p := jsonrpc.AppConfigParams{App: app}
	for _, kv := range settings {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "replicas", "quorum", "weight":
			n, err := strconv.Atoi(v)
			if err != nil {
				return p, c.usageError("%s: want a number, not %q", k, v)
			}
			switch k {
			case "replicas":
				p.Replicas = &n
			case "quorum":
				p.Quorum = &n
			default:
				p.Weight = &n
			}
		case "adaptive":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return p, c.usageError("adaptive: want true or false, not %q", v)
			}
			p.Adaptive = &b
		case "validator":
			p.Validator = &v
		default:
			return p, c.usageError("unknown setting %q: want replicas=N, quorum=M, adaptive=true|false, validator=HASH or weight=W", kv)
		}
	}
	return p, nil
}
