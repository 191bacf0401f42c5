package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// maxEndpointLen bounds the data of an endpoint event.
const maxEndpointLen = 4096

// parseEndpoint reads the data of a legacy HTTP+SSE `endpoint` event: a
// URI reference (usually relative, carrying the upstream's session) that
// the client POSTs its messages to, resolved against the SSE URL. It must
// stay on the SSE URL's origin (scheme, host and port), as the TypeScript
// SDK requires, so a server cannot point the gateway's POSTs, with its
// clients' messages, at another host. A fragment is dropped.
func parseEndpoint(base *url.URL, data []byte) (*url.URL, error) {
	s := strings.TrimSpace(string(data))
	switch {
	case s == "":
		return nil, errors.New("empty endpoint")
	case len(s) > maxEndpointLen:
		return nil, fmt.Errorf("endpoint longer than %d bytes", maxEndpointLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return nil, fmt.Errorf("endpoint %q: space or control character", s)
		}
	}
	ref, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %v", s, err)
	}
	u := base.ResolveReference(ref)
	if !sameOrigin(base, u) {
		return nil, fmt.Errorf("endpoint %q is not on the SSE URL's origin %s://%s", s, base.Scheme, base.Host)
	}
	if u.User != nil && (base.User == nil || u.User.String() != base.User.String()) {
		// The SSE URL's own (the operator's Basic authentication) goes on
		// to a relative endpoint; the upstream cannot name other.
		return nil, fmt.Errorf("endpoint %q carries user information", s)
	}
	u.Fragment, u.RawFragment = "", ""
	if len(u.String()) > maxEndpointLen {
		return nil, fmt.Errorf("endpoint longer than %d bytes", maxEndpointLen)
	}
	return u, nil
}

// sameOrigin compares scheme, host (case-insensitively) and port (with
// the scheme's default).
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && b.Opaque == "" &&
		strings.EqualFold(a.Hostname(), b.Hostname()) && portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}
