package jsonrpc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/gorilla/rpc/v2/json2"
)

// decodeParams decodes a method's params, a JSON object of named
// parameters, into dst, a pointer to a struct. It is strict where
// encoding/json is lenient, and its errors name the parameter: names match
// exactly (encoding/json ignores case), an unknown name is refused (a typo
// must not pass for an omitted optional parameter), a field tagged
// rpc:"required" must be present and not null, and a value of the wrong
// type says what it should be. Absent or null params mean {}.
//
// Fields are taken from json tags; an embedded struct's fields are
// flattened as encoding/json does. A slice of structs is decoded element by
// element so an error names its index: "tasks[3].kind".
func decodeParams(raw *json.RawMessage, dst any) error {
	var b []byte
	if raw != nil {
		b = bytes.TrimSpace(*raw)
	}
	if len(b) == 0 || string(b) == "null" {
		b = []byte("{}")
	}
	if b[0] != '{' {
		return invalidParam("", "params must be an object of named parameters")
	}
	if err := decodeObject(b, reflect.ValueOf(dst).Elem(), ""); err != nil {
		return err
	}
	return nil
}

type paramField struct {
	name     string
	required bool
	v        reflect.Value
}

// paramFields lists the decodable fields of the struct v, flattening
// embedded structs.
func paramFields(v reflect.Value, into []paramField) []paramField {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			into = paramFields(v.Field(i), into)
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		into = append(into, paramField{name: name, required: f.Tag.Get("rpc") == "required", v: v.Field(i)})
	}
	return into
}

func decodeObject(b []byte, v reflect.Value, path string) *json2.Error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil || members == nil {
		return invalidParam(path, "must be an object")
	}
	fields := paramFields(v, nil)
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.name] = true
	}
	var unknown []string
	for k := range members {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return invalidParam(join(path, clip(unknown[0])), "unknown parameter")
	}
	for _, f := range fields {
		val, ok := members[f.name]
		if !ok || string(val) == "null" {
			if f.required {
				return invalidParam(join(path, f.name), "is required")
			}
			continue
		}
		if err := decodeValue(val, f.v, join(path, f.name)); err != nil {
			return err
		}
	}
	return nil
}

func decodeValue(b []byte, v reflect.Value, path string) *json2.Error {
	t := v.Type()
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
		var elems []json.RawMessage
		if err := json.Unmarshal(b, &elems); err != nil {
			return invalidParam(path, "must be an array of objects")
		}
		s := reflect.MakeSlice(t, len(elems), len(elems))
		for i, e := range elems {
			if err := decodeObject(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				if fd, ok := err.Data.(fieldData); ok && fd.Index == nil {
					fd.Index = &i
					err.Data = fd
				}
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if err := json.Unmarshal(b, v.Addr().Interface()); err != nil {
		return invalidParam(path, "must be "+want(t))
	}
	return nil
}

// want says in words what a JSON value for t looks like.
func want(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int32:
		return "an integer from -2147483648 to 2147483647"
	case reflect.Uint32:
		return "an integer from 0 to 4294967295"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Uint64:
		return "a non-negative integer"
	case reflect.Slice:
		switch t.Elem().Kind() {
		case reflect.Uint8:
			return "a base64 string (standard alphabet, with padding)"
		case reflect.Uint64:
			return "an array of non-negative integers"
		}
		return "an array of " + strings.TrimPrefix(want(t.Elem()), "a ") + "s"
	}
	return "a " + t.Kind().String()
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// clip keeps a client-chosen name short in an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
