package wire

import (
	"fmt"
	"net/url"
	"strings"
)

// HTTPURL is EndpointURL for one of the master's plain HTTP endpoints,
// such as "/modules": the same host and prefix, in http:// or https://.
func HTTPURL(base, endpoint string) (string, error) {
	u, err := EndpointURL(base, endpoint)
	if err != nil {
		return "", err
	}
	if rest, ok := strings.CutPrefix(u, "wss://"); ok {
		return "https://" + rest, nil
	}
	return "http://" + strings.TrimPrefix(u, "ws://"), nil
}

// EndpointURL turns the master's base URL, as a user types it (ws://,
// wss://, http:// or https://, maybe with a path prefix behind a proxy),
// into the WebSocket URL of one of its endpoints, such as "/ws/slave".
func EndpointURL(base, endpoint string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("master URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("master URL %q: scheme must be ws, wss, http or https", base)
	}
	if u.Host == "" {
		return "", fmt.Errorf("master URL %q has no host", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + endpoint
	u.RawPath, u.Fragment, u.RawFragment = "", "", ""
	return u.String(), nil
}
