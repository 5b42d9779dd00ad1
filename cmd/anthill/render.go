package main

// What the client commands print. Results are decoded generically, so a
// field the master adds shows up in --json (and in get, slaves get and
// stats) without a change here.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// printJSON writes a result as one JSON document and a newline.
func printJSON(w io.Writer, raw json.RawMessage) error {
	_, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw))
	return err
}

func printListTable(w io.Writer, method string, raw json.RawMessage, listKey string, cols []column) error {
	v, err := decodeOrdered(raw)
	res, _ := v.(object)
	if err != nil || res == nil {
		return fmt.Errorf("%s: unexpected result %.200s", method, raw)
	}
	list, _ := res.get(listKey).([]any)
	rows := make([]object, 0, len(list))
	for _, x := range list {
		o, _ := x.(object)
		rows = append(rows, o)
	}
	return printTable(w, cols, rows)
}

func printResultFields(w io.Writer, method string, raw json.RawMessage) error {
	v, err := decodeOrdered(raw)
	res, _ := v.(object)
	if err != nil || res == nil {
		return fmt.Errorf("%s: unexpected result %.200s", method, raw)
	}
	return printFields(w, res)
}

// --- generic output

// object is a decoded JSON object that keeps its members' order. Values
// are object, []any, string, json.Number, bool or nil.
type object []member

type member struct {
	key string
	val any
}

func (o object) lookup(key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

func (o object) get(key string) any {
	v, _ := o.lookup(key)
	return v
}

// decodeOrdered decodes one JSON value, keeping the order of members.
func decodeOrdered(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the result")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		o := object{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			o = append(o, member{k.(string), v})
		}
		_, err := dec.Token()
		return o, err
	case '[':
		a := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.Token()
		return a, err
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// column is one column of a table: value returns a row's cell, false when
// the row lacks the field. A column no row has is left out.
type column struct {
	title string
	value func(object) (string, bool)
}

// field is a column showing the first of keys a row has.
func field(title string, keys ...string) column {
	return column{title, func(o object) (string, bool) {
		for _, k := range keys {
			if v, ok := o.lookup(k); ok {
				return clipText(fmtValue(k, v), 80), true
			}
		}
		return "", false
	}}
}

// printTable prints rows under the columns at least one row has (every
// column when there are no rows).
func printTable(w io.Writer, cols []column, rows []object) error {
	var shown []column
	for _, c := range cols {
		for _, r := range rows {
			if _, ok := c.value(r); ok {
				shown = append(shown, c)
				break
			}
		}
	}
	if len(rows) == 0 {
		shown = cols
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for i, c := range shown {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, c.title)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		for i, c := range shown {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			s, ok := c.value(r)
			if !ok || s == "" {
				s = "-"
			}
			fmt.Fprint(tw, s)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// printFields prints an object as "name: value" lines in its order;
// nested objects print as dotted names, lists of objects one element per
// line.
func printFields(w io.Writer, o object) error {
	var lines []member
	flatten("", o, &lines)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintf(tw, "%s:\t%s\n", l.key, fmtValue(l.key, l.val))
	}
	return tw.Flush()
}

func flatten(prefix string, v any, out *[]member) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch x := v.(type) {
	case object:
		if len(x) == 0 && prefix != "" {
			*out = append(*out, member{prefix, nil})
		}
		for _, m := range x {
			flatten(join(m.key), m.val, out)
		}
	case []any:
		for _, e := range x {
			if _, ok := e.(object); ok {
				for i, e := range x {
					*out = append(*out, member{fmt.Sprintf("%s[%d]", prefix, i), e})
				}
				return
			}
		}
		*out = append(*out, member{prefix, v})
	default:
		*out = append(*out, member{prefix, v})
	}
}

// fmtValue formats a value for a human. key picks the format of strings:
// result and payload are base64 bytes, names ending in _at are times.
func fmtValue(key string, v any) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		key = key[i+1:]
	}
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		switch {
		case key == "result" || key == "payload":
			b, err := base64.StdEncoding.DecodeString(x)
			if err != nil {
				return quoteIfNeeded(x)
			}
			return fmtBytes(b)
		case strings.HasSuffix(key, "_at"):
			return fmtTime(x)
		case x == "":
			return "-"
		}
		return quoteIfNeeded(x)
	case json.Number:
		return fmtNumber(x)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		if len(x) == 0 {
			return "-"
		}
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmtValue(key, e)
		}
		return strings.Join(parts, ",")
	case object:
		parts := make([]string, len(x))
		for i, m := range x {
			parts[i] = m.key + "=" + fmtValue(m.key, m.val)
		}
		return strings.Join(parts, " ")
	}
	return fmt.Sprint(v)
}

// fmtNumber shows integers as they are and other numbers to three
// decimals at most.
func fmtNumber(n json.Number) string {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		return s
	}
	f, err := n.Float64()
	if err != nil {
		return s
	}
	s = strconv.FormatFloat(f, 'f', 3, 64)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

// fmtBytes shows a result or payload: as text when it is short, valid
// UTF-8, Go-quoted when it holds control characters; else as base64:...
func fmtBytes(b []byte) string {
	if len(b) == 0 {
		return `""`
	}
	if len(b) <= shortResult && utf8.Valid(b) {
		return quoteIfNeeded(string(b))
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

// quoteIfNeeded quotes s when it would not read back as itself: it holds
// control or invisible characters, or looks quoted or base64-tagged.
func quoteIfNeeded(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) ||
		strings.HasPrefix(s, `"`) || strings.HasPrefix(s, "base64:") {
		return strconv.Quote(s)
	}
	return s
}

// fmtTime shows an RFC 3339 time to the second; a zero time is "-".
func fmtTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return quoteIfNeeded(s)
	}
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// clipText cuts s to n runes.
func clipText(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
