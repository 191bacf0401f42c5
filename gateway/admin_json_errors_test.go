package gateway

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAdminAPIErrorsAreJSON: the admin API answers every error with its
// JSON error body, an unknown path (404) and a wrong method (405, with
// Allow) included, as it does for its own 400, 401 and 404.
func TestAdminAPIErrorsAreJSON(t *testing.T) {
	s := newTestServer(t, Config{AdminToken: "s3cret"})
	h := s.AdminHandler(true)
	for _, c := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/admin/v1/nope", http.StatusNotFound, ""},
		{"GET", "/admin/v1/sessions/", http.StatusNotFound, ""},
		{"PUT", "/admin/v1/sessions", http.StatusMethodNotAllowed, "GET"},
		{"POST", "/admin/v1/sessions/abc", http.StatusMethodNotAllowed, "DELETE"},
		{"GET", "/admin/v1/shards/0/drain", http.StatusMethodNotAllowed, "POST"},
	} {
		w := adminGet(t, h, c.method, c.path, "s3cret")
		require.Equal(t, c.status, w.Code, "%s %s", c.method, c.path)
		assert.Equal(t, "application/json", w.Header().Get("Content-Type"), "%s %s", c.method, c.path)
		var e struct {
			Error string `json:"error"`
		}
		assert.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), "%s %s: %q", c.method, c.path, w.Body.String())
		assert.NotEmpty(t, e.Error, "%s %s", c.method, c.path)
		if c.allow != "" {
			assert.Contains(t, w.Header().Get("Allow"), c.allow, "%s %s", c.method, c.path)
		}
	}
	// The routes themselves still answer.
	assert.Equal(t, http.StatusOK, adminGet(t, h, "GET", "/admin/v1/sessions", "s3cret").Code)
	assert.Equal(t, http.StatusNotFound, adminGet(t, h, "DELETE", "/admin/v1/sessions/abc", "s3cret").Code)
	assert.Equal(t, http.StatusUnauthorized, adminGet(t, h, "PUT", "/admin/v1/sessions", "").Code, "the token first")
}
