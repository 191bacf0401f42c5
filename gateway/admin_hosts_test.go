package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestAdminLoopbackHostsIgnoreEndpointHosts: the admin handler of a
// loopback listener accepts loopback Host names only, whatever
// AllowedHosts says for the MCP endpoint (a public name, or "*"): its own
// loopback name must work, and a rebound name must not, even same-origin.
func TestAdminLoopbackHostsIgnoreEndpointHosts(t *testing.T) {
	for _, hosts := range [][]string{{"mcp.example.com"}, {"*"}} {
		s := newTestServer(t, Config{AllowedHosts: hosts})
		h := s.AdminHandler(true)

		w := adminGet(t, h, http.MethodGet, "/healthz", "")
		assert.Equal(t, http.StatusOK, w.Code, "AllowedHosts %v: Host 127.0.0.1:9090 refused: %s", hosts, w.Body)

		// A page of evil.example whose name was rebound to 127.0.0.1.
		r := httptest.NewRequest(http.MethodGet, "http://evil.example:9090/metrics", nil)
		r.Header.Set("Origin", "http://evil.example:9090")
		w = httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, http.StatusForbidden, w.Code, "AllowedHosts %v: a rebound Host was served", hosts)
	}
}
