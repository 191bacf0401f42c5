package gateway

import (
	"net"
	"strings"
)

// originPolicy validates Host and Origin headers against DNS rebinding.
type originPolicy struct {
	anyHost   bool
	hosts     map[string]bool // lower-case names without port
	anyOrigin bool
	// origins maps "scheme://host" to true (any port) and
	// "scheme://host:port" to true (that port only).
	origins  map[string]bool
	loopback bool // defaults: loopback origins only
}

var loopbackNames = []string{"localhost", "127.0.0.1", "::1", "[::1]"}

func newOriginPolicy(origins, hosts []string, loopback bool) originPolicy {
	p := originPolicy{hosts: map[string]bool{}, origins: map[string]bool{}, loopback: loopback}
	switch {
	case hosts == nil && loopback:
		for _, h := range loopbackNames {
			p.hosts[h] = true
		}
	case hosts == nil:
		p.anyHost = true
	default:
		for _, h := range hosts {
			if h == "*" {
				p.anyHost = true
			}
			p.hosts[strings.ToLower(strings.Trim(h, "[]"))] = true
		}
	}
	switch {
	case origins == nil && loopback:
		for _, scheme := range []string{"http", "https"} {
			for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
				p.origins[scheme+"://"+h] = true
			}
		}
	case origins == nil:
		// Same-origin only: checked against the Host header.
	default:
		for _, o := range origins {
			if o == "*" {
				p.anyOrigin = true
			}
			p.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
		}
	}
	p.loopback = loopback && origins == nil
	return p
}

// hostAllowed reports whether the Host header (or an absolute-form
// target's authority) is well formed (validAuthority) and names an allowed
// host.
func (p *originPolicy) hostAllowed(host []byte) bool {
	if !validAuthority(host) {
		return false
	}
	if p.anyHost {
		return true
	}
	name := strings.ToLower(hostName(string(host)))
	return name != "" && p.hosts[name]
}

// originAllowed reports whether a present Origin header is allowed. host is
// the request's authority (validated), for the same-origin default. The
// header must be a serialized origin, scheme://host[:port] and nothing
// else: userinfo, a path or a query make it malformed, so refused. The
// opaque origin null is allowed only when the list names it; "*" allows
// any well-formed origin.
func (p *originPolicy) originAllowed(origin, host []byte) bool {
	o := strings.ToLower(string(origin))
	if o == "null" {
		return p.origins["null"]
	}
	scheme, auth, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || !validAuthority([]byte(auth)) {
		return false
	}
	if p.anyOrigin {
		return true
	}
	if len(p.origins) == 0 && !p.loopback {
		return strings.EqualFold(auth, string(host))
	}
	if p.origins[o] {
		return true
	}
	h := hostName(auth)
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return p.origins[scheme+"://"+h]
}

// hostName strips the port from a Host header value; IPv6 brackets go too.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return strings.Trim(h, "[]")
	}
	return strings.Trim(host, "[]")
}

func isLoopbackAddr(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	return tcp.IP.IsLoopback()
}
