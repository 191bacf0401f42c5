package gateway

import (
	_ "embed"
	"net/http"
)

// adminPage is the admin page: one self-contained HTML file (no build step,
// no CDN) that asks for the admin token and polls /admin/v1/stats.
//
//go:embed adminui/index.html
var adminPage []byte

func servePage(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	h.Set("X-Frame-Options", "DENY")
	_, _ = w.Write(adminPage)
}
