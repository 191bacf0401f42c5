package gateway

import (
	"net"
	"net/url"
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

// hostAllowed reports whether the Host header names an allowed host.
func (p *originPolicy) hostAllowed(host []byte) bool {
	if p.anyHost {
		return true
	}
	name := strings.ToLower(hostName(string(host)))
	return name != "" && p.hosts[name]
}

// originAllowed reports whether a present Origin header is allowed. host is
// the request's Host header, for the same-origin default.
func (p *originPolicy) originAllowed(origin, host []byte) bool {
	if p.anyOrigin {
		return true
	}
	o := strings.ToLower(string(origin))
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if len(p.origins) == 0 && !p.loopback {
		return strings.EqualFold(u.Host, string(host))
	}
	if p.origins[u.Scheme+"://"+u.Host] {
		return true
	}
	h := u.Hostname()
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return p.origins[u.Scheme+"://"+h]
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
