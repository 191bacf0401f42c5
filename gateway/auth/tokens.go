package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// MinStaticTokenLen is the shortest static token a tokens file may hold.
const MinStaticTokenLen = 16

// Tokens is a set of static bearer tokens, each naming a principal. Tokens
// are held as SHA-256 digests only.
type Tokens struct {
	byDigest   map[[32]byte]tokenEntry
	principals map[string]struct{}
}

type tokenEntry struct {
	digest    [32]byte
	principal string
}

// ParseTokens reads a tokens file: one "token principal" pair per line,
// separated by spaces or tabs; blank lines and lines starting with # are
// skipped. A token is at least MinStaticTokenLen bytes of visible ASCII; a
// principal is any UTF-8 without spaces that does not start with
// JWTPrincipalPrefix (a JWT's). A token may appear once.
func ParseTokens(data []byte) (*Tokens, error) {
	t := &Tokens{byDigest: map[[32]byte]tokenEntry{}, principals: map[string]struct{}{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%w: tokens line %d: want \"token principal\"", ErrConfig, line)
		}
		tok, principal := fields[0], fields[1]
		if len(tok) < MinStaticTokenLen {
			return nil, fmt.Errorf("%w: tokens line %d: token shorter than %d bytes", ErrConfig, line, MinStaticTokenLen)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] < 0x21 || tok[i] > 0x7e {
				return nil, fmt.Errorf("%w: tokens line %d: token must be visible ASCII", ErrConfig, line)
			}
		}
		if !utf8.ValidString(principal) {
			return nil, fmt.Errorf("%w: tokens line %d: principal is not UTF-8", ErrConfig, line)
		}
		if strings.HasPrefix(principal, JWTPrincipalPrefix) {
			return nil, fmt.Errorf("%w: tokens line %d: principal starts with %q, which names JWT subjects", ErrConfig, line, JWTPrincipalPrefix)
		}
		d := sha256.Sum256([]byte(tok))
		if _, dup := t.byDigest[d]; dup {
			return nil, fmt.Errorf("%w: tokens line %d: token appears twice", ErrConfig, line)
		}
		t.byDigest[d] = tokenEntry{digest: d, principal: principal}
		t.principals[principal] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: tokens: %v", ErrConfig, err)
	}
	return t, nil
}

// LoadTokens reads a tokens file (see ParseTokens).
func LoadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	t, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int { return len(t.byDigest) }

// names reports whether a token of the set names principal.
func (t *Tokens) names(principal string) bool {
	_, ok := t.principals[principal]
	return ok
}

// lookup finds the token whose digest is d. The map is keyed by the digest,
// so how long the lookup takes depends on the digest, never on how much of
// a stored token a guess matches; the final comparison is constant-time
// anyway.
func (t *Tokens) lookup(d *[32]byte) (Identity, bool) {
	e, ok := t.byDigest[*d]
	if !ok || subtle.ConstantTimeCompare(e.digest[:], d[:]) != 1 {
		return Identity{}, false
	}
	return Identity{Principal: e.principal, AllScopes: true}, true
}

// Lookup returns the identity of a static token.
func (t *Tokens) Lookup(token []byte) (Identity, bool) {
	d := sha256.Sum256(token)
	return t.lookup(&d)
}
