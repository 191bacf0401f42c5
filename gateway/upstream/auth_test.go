package upstream

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// headerLog records one header of every request an upstream receives, by
// method.
type headerLog struct {
	mu   sync.Mutex
	seen []string // "METHOD value"
}

func (l *headerLog) add(r *http.Request, name string) {
	l.mu.Lock()
	l.seen = append(l.seen, r.Method+" "+r.Header.Get(name))
	l.mu.Unlock()
}

func (l *headerLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}

// TestAuthHeader: the Streamable HTTP transport sends no credential by
// default; a static AuthHeader goes with every request (POST, GET, DELETE);
// a forwarding one sends the credential of the call's context, and the last
// one forwarded on requests without (the DELETE at the end).
func TestAuthHeader(t *testing.T) {
	for _, c := range []struct {
		name string
		auth AuthHeader
		ctx  func(i int) context.Context
		want []string
	}{
		{"none", AuthHeader{}, nil, []string{"POST ", "POST ", "GET ", "DELETE "}},
		{"static", AuthHeader{Name: "Authorization", Value: "Bearer up-secret"}, nil,
			[]string{"POST Bearer up-secret", "POST Bearer up-secret", "GET Bearer up-secret", "DELETE Bearer up-secret"}},
		{"other header", AuthHeader{Name: "X-Api-Key", Value: "k"}, nil, []string{"POST k", "POST k", "GET k", "DELETE k"}},
		{"forward", AuthHeader{Name: "Authorization", Forward: true},
			func(i int) context.Context {
				return WithCredential(context.Background(), "Bearer client-"+string(rune('0'+i)))
			},
			[]string{"POST Bearer client-0", "POST Bearer client-1", "GET Bearer client-2", "DELETE Bearer client-2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var log headerLog
			name := c.auth.Name
			if name == "" {
				name = "Authorization"
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				log.add(r, name)
				switch r.Method {
				case http.MethodPost:
					b, _ := io.ReadAll(r.Body)
					w.Header().Set("Mcp-Session-Id", "up-1")
					if string(b) == initReq {
						w.Header().Set("Content-Type", "application/json")
						_, _ = w.Write([]byte(initResp))
						return
					}
					w.WriteHeader(http.StatusAccepted)
				case http.MethodGet:
					w.Header().Set("Content-Type", "text/event-stream")
					w.WriteHeader(http.StatusOK)
					sseWrite(w, ": ok\n\n")
				default:
					w.WriteHeader(http.StatusNoContent)
				}
			}))
			defer srv.Close()
			tr, err := NewHTTP(HTTPConfig{URL: srv.URL + "/mcp", Timeout: 5 * time.Second, Auth: c.auth})
			require.NoError(t, err)
			defer tr.Close()
			ctx := func(i int) context.Context {
				if c.ctx == nil {
					return context.Background()
				}
				return c.ctx(i)
			}
			s, _, err := tr.Connect(ctx(0), []byte(initReq))
			require.NoError(t, err)
			_, err = s.Send(ctx(1), []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
			require.NoError(t, err)
			st, err := s.Listen(ctx(2))
			require.NoError(t, err)
			_ = st.Close()
			require.NoError(t, s.Close(context.Background()))
			assert.Equal(t, c.want, log.all())
		})
	}
}

func TestAuthHeaderValidate(t *testing.T) {
	for _, bad := range []AuthHeader{
		{Value: "x"}, {Forward: true}, {Name: "Bad Name", Value: "x"}, {Name: "Mcp-Session-Id", Value: "x"},
		{Name: "Authorization", Value: "a\r\nX-Injected: 1"},
	} {
		assert.Error(t, bad.Validate(), "%+v", bad)
	}
	assert.NoError(t, AuthHeader{}.Validate())
	assert.NoError(t, AuthHeader{Name: "Authorization", Forward: true}.Validate())
}
