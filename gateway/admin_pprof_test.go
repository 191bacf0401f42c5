package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestAdminPprofSymbolPost: the symbol endpoint answers POST, which is how
// pprof tools send the addresses they look up (a body of addresses).
func TestAdminPprofSymbolPost(t *testing.T) {
	h := newTestServer(t, Config{}).AdminHandler(true)
	for _, method := range []string{"GET", "POST"} {
		r := httptest.NewRequest(method, "http://127.0.0.1:9090/debug/pprof/symbol", strings.NewReader("0x1"))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, http.StatusOK, w.Code, method)
		assert.Contains(t, w.Body.String(), "num_symbols", method)
	}
}
