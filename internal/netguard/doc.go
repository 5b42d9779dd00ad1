// Package netguard holds the master's guards at the network edge, shared by
// master, web and jsonrpc: a listener that caps connections per IP and in
// total, a per-IP limiter of credential failures with exponential lockout
// and sampled logging, and a bearer-token check for plain HTTP handlers.
// It knows no protocol message, task or session: callers decide what a
// credential is and what to answer.
package netguard
