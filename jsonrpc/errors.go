package jsonrpc

import (
	"encoding/json"
	"fmt"

	"github.com/gorilla/rpc/v2/json2"
)

// JSON-RPC error codes. They are part of the API: scripts match on them.
// The first five are JSON-RPC 2.0's own; the rest are in its server range.
const (
	CodeParseError     = -32700 // the body is not valid JSON
	CodeInvalidRequest = -32600 // valid JSON, but not a request object with jsonrpc "2.0", a method and an id
	CodeMethodNotFound = -32601 // no such method
	CodeInvalidParams  = -32602 // a parameter is missing, unknown or out of range; the message names it
	CodeInternal       = -32603 // the master failed; the message says how
	CodeUnauthorized   = -32001 // missing or wrong bearer token (HTTP 401)
	CodeTooLarge       = -32002 // a payload or the request body exceeds its limit
	CodeUnavailable    = -32003 // the call was abandoned before the master answered
	CodeNotFound       = -32004 // no task with that id, or no slave with that session
	CodeQuotaExceeded  = -32005 // the submission would pass one of the master's quotas; nothing was stored
	CodeConflict       = -32009 // the task's state forbids the operation (cancel a final task, retry one that is not failed or canceled)
	CodeRateLimited    = -32029 // too many wrong tokens from this address lately; the token was not checked (HTTP 429)
)

// Error is a JSON-RPC error object as a client receives it.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s (code %d)", e.Message, e.Code) }

// rpcError builds the error a method returns; json2 sends it as is.
func rpcError(code int, data any, format string, args ...any) *json2.Error {
	return &json2.Error{Code: json2.ErrorCode(code), Message: fmt.Sprintf(format, args...), Data: data}
}

// fieldData is the data of an invalid params error: the offending
// parameter's path, e.g. "tasks[3].kind".
type fieldData struct {
	Field string `json:"field"`
	Index *int   `json:"index,omitempty"` // the offending task of a batch
}

// invalidParam reports a bad parameter: "invalid params: <field>: <problem>".
func invalidParam(field, problem string) *json2.Error {
	if field == "" {
		return rpcError(CodeInvalidParams, nil, "invalid params: %s", problem)
	}
	return rpcError(CodeInvalidParams, fieldData{Field: field}, "invalid params: %s: %s", field, problem)
}
