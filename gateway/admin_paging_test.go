package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAdminListingPages: paging through many sessions (and through a
// filtered subset) returns each matching session once, in id order, pages
// of the asked size, the last one without a cursor.
func TestAdminListingPages(t *testing.T) {
	s := newTestServer(t, Config{AdminToken: "s3cret", Shards: 8})
	h := s.AdminHandler(true)
	var all, bobs []string
	for i := range 500 {
		who := "alice"
		if i%3 == 0 {
			who = "bob"
		}
		sess, _ := addSession(t, s, who, "2025-11-25")
		all = append(all, sess.id)
		if who == "bob" {
			bobs = append(bobs, sess.id)
		}
	}
	slices.Sort(all)
	slices.Sort(bobs)
	for _, tc := range []struct {
		query string
		want  []string
		limit int
	}{{"", all, 7}, {"&principal=bob", bobs, 1000}, {"&principal=bob", bobs, 10}, {"", all, 500}} {
		var got []string
		after, pages := "", 0
		for {
			var page struct {
				Sessions []adminSession `json:"sessions"`
				Next     string         `json:"next"`
				Matching int            `json:"matching"`
			}
			w := adminGet(t, h, "GET", "/admin/v1/sessions?limit="+strconv.Itoa(tc.limit)+"&after="+after+tc.query, "s3cret")
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &page))
			assert.Equal(t, len(tc.want), page.Matching)
			pages++
			if page.Next != "" {
				require.Len(t, page.Sessions, tc.limit, "a page before the last is full")
				assert.Equal(t, page.Sessions[len(page.Sessions)-1].ID, page.Next)
			}
			for _, x := range page.Sessions {
				got = append(got, x.ID)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
			require.Less(t, pages, 1000, "the cursor moves on")
		}
		assert.Equal(t, tc.want, got, "query %q, limit %d", tc.query, tc.limit)
		assert.Equal(t, (len(tc.want)+tc.limit-1)/tc.limit, pages, "query %q, limit %d", tc.query, tc.limit)
	}
}

// BenchmarkAdminListFirstPage: the first page (100 sessions) of a listing
// of 100,000 sessions.
func BenchmarkAdminListFirstPage(b *testing.B) {
	s := newTestServer(b, Config{AdminToken: "s3cret", Shards: 64})
	h := s.AdminHandler(true)
	for range 100_000 {
		addSession(b, s, "alice", "2025-11-25")
	}
	b.ReportAllocs()
	for b.Loop() {
		if w := adminGet(b, h, "GET", "/admin/v1/sessions", "s3cret"); w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
