package gateway

import (
	"bytes"
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
// host. It does not allocate.
func (p *originPolicy) hostAllowed(host []byte) bool {
	if !validAuthority(host) {
		return false
	}
	if p.anyHost {
		return true
	}
	var buf [256]byte
	name := lowerInto(buf[:], bytes.Trim(authorityHost(host), "[]"))
	return len(name) > 0 && p.hosts[string(name)]
}

// originAllowed reports whether a present Origin header is allowed. host is
// the request's authority (validated), for the same-origin default. The
// header must be a serialized origin, scheme://host[:port] and nothing
// else: userinfo, a path or a query make it malformed, so refused. The
// opaque origin null is allowed only when the list names it; "*" allows
// any well-formed origin. It does not allocate.
func (p *originPolicy) originAllowed(origin, host []byte) bool {
	var buf, key [512]byte
	o := lowerInto(buf[:], origin)
	if o == nil {
		return false
	}
	if string(o) == "null" {
		return p.origins["null"]
	}
	i := bytes.Index(o, []byte("://"))
	if i < 0 {
		return false
	}
	scheme, auth := o[:i], o[i+3:]
	if (string(scheme) != "http" && string(scheme) != "https") || !validAuthority(auth) {
		return false
	}
	if p.anyOrigin {
		return true
	}
	if len(p.origins) == 0 && !p.loopback {
		return bytes.EqualFold(auth, host)
	}
	if p.origins[string(o)] {
		return true
	}
	// Entries without a port allow any port of their host.
	k := append(append(append(key[:0], scheme...), "://"...), authorityHost(auth)...)
	return p.origins[string(k)]
}

// authorityHost returns the host of a valid authority: without the port,
// with an IPv6 address's brackets.
func authorityHost(a []byte) []byte {
	if len(a) > 0 && a[0] == '[' {
		return a[:bytes.IndexByte(a, ']')+1]
	}
	if i := bytes.IndexByte(a, ':'); i >= 0 {
		return a[:i]
	}
	return a
}

// lowerInto copies b into dst in lower case; nil if it does not fit.
func lowerInto(dst, b []byte) []byte {
	if len(b) > len(dst) {
		return nil
	}
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return dst[:len(b)]
}

func isLoopbackAddr(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	return tcp.IP.IsLoopback()
}
