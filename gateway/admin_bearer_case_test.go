package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestAdminBearerSchemeCaseInsensitive: the admin API takes its token
// under any case of the Bearer scheme (RFC 9110 section 11.1, RFC 6750
// section 2.1), as the MCP endpoint does (bearerToken); the token itself
// stays exact.
func TestAdminBearerSchemeCaseInsensitive(t *testing.T) {
	s := newTestServer(t, Config{AdminToken: "s3cret"})
	h := s.AdminHandler(true)
	for _, c := range []struct {
		header string
		status int
	}{
		{"Bearer s3cret", http.StatusOK},
		{"bearer s3cret", http.StatusOK},
		{"BEARER s3cret", http.StatusOK},
		{"bearer S3CRET", http.StatusUnauthorized},
		{"Basic s3cret", http.StatusUnauthorized},
		{"Bearers3cret", http.StatusUnauthorized},
	} {
		r := httptest.NewRequest("GET", "http://127.0.0.1:9090/admin/v1/config", nil)
		r.Header.Set("Authorization", c.header)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, c.status, w.Code, "Authorization: %s", c.header)
	}
}
