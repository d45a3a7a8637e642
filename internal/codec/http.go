package codec

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"

	"go.temporal.io/sdk/converter"
)

// DefaultMaxBodyBytes bounds a request to the codec server. A payload is at
// most 2 MiB on a default Temporal server and the UI sends a page of them.
const DefaultMaxBodyBytes = 32 << 20

// ServerOptions configure the codec HTTP server.
type ServerOptions struct {
	// Origins are the Temporal UI origins allowed to call from a browser,
	// e.g. "http://localhost:8233"; an empty list allows no browser calls
	// (the temporal CLI's --codec-endpoint needs no CORS).
	Origins []string
	// Token, when set, must be sent as "Authorization: Bearer TOKEN". The
	// temporal CLI sends it with --codec-auth "Bearer TOKEN".
	Token string
	// Authorize, when set, is asked about every request after the token
	// check, e.g. to validate the OIDC access token the UI sends with
	// codec.passAccessToken; its error text is returned with a 401.
	Authorize func(*http.Request) error
	// MaxBodyBytes bounds a request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// NewHTTPHandler serves c at POST .../encode and .../decode in the shape the
// Temporal UI and CLI use ({"payloads": [{"metadata": {...}, "data": "..."}]}),
// with CORS for the configured UI origins and, if a token is set, bearer
// authentication. Without a token or Authorize it decrypts for anyone who
// can reach it (CORS only restricts browsers), so bind it to loopback or a
// private network then. Mount it at the path the UI's codec endpoint names.
func NewHTTPHandler(c converter.PayloadCodec, opts ServerOptions) http.Handler {
	limit := opts.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	var tokenSum [sha256.Size]byte
	if opts.Token != "" {
		tokenSum = sha256.Sum256([]byte(opts.Token))
	}
	inner := converter.NewPayloadCodecHTTPHandler(c)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		if origin != "" {
			if !slices.Contains(opts.Origins, origin) {
				http.Error(w, "origin "+origin+" may not use this codec server", http.StatusForbidden)
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
			h.Set("Access-Control-Max-Age", "600")
		}
		// A preflight carries no credentials by design; the real request
		// that follows is authenticated.
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if opts.Token != "" {
			// Comparing digests keeps the comparison constant-time even
			// when the lengths differ.
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			gotSum := sha256.Sum256([]byte(got))
			if !ok || subtle.ConstantTimeCompare(gotSum[:], tokenSum[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="gauntlet codec"`)
				http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
				return
			}
		}
		if opts.Authorize != nil {
			if err := opts.Authorize(r); err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="gauntlet codec"`)
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		inner.ServeHTTP(w, r)
	})
}
