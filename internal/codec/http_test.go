package codec

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const uiOrigin = "http://localhost:8233"

// uiPayloads is the JSON the Temporal UI posts and reads back.
type uiPayloads struct {
	Payloads []struct {
		Metadata map[string]string `json:"metadata"`
		Data     string            `json:"data"`
	} `json:"payloads"`
}

func server(t *testing.T, opts ServerOptions) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHTTPHandler(newCodec(t, ring(t, entry(t, "k1"))), opts))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestHTTPEncodeDecode(t *testing.T) {
	srv := server(t, ServerOptions{Origins: []string{uiOrigin}, Token: "t0ken"})
	auth := map[string]string{"Authorization": "Bearer t0ken", "Origin": uiOrigin}
	plain := `{"payloads":[{"metadata":{"encoding":"` + b64("json/plain") + `"},"data":"` + b64(`{"password":"`+secret+`"}`) + `"}]}`

	resp, encBody := post(t, srv.URL+"/codec/encode", plain, auth)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("encode: %d %s", resp.StatusCode, encBody)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != uiOrigin {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
	var enc uiPayloads
	if err := json.Unmarshal([]byte(encBody), &enc); err != nil || len(enc.Payloads) != 1 {
		t.Fatalf("encode response %s: %v", encBody, err)
	}
	if got := enc.Payloads[0].Metadata["encoding"]; got != b64(EncodingEncrypted) {
		t.Fatalf("encoded payload encoding %q", got)
	}
	if strings.Contains(encBody, secret) || strings.Contains(encBody, b64(`{"password":"`+secret+`"}`)) {
		t.Fatal("encode response holds the plaintext")
	}

	resp, decBody := post(t, srv.URL+"/codec/decode", encBody, auth)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("decode: %d %s", resp.StatusCode, decBody)
	}
	var dec uiPayloads
	if err := json.Unmarshal([]byte(decBody), &dec); err != nil || len(dec.Payloads) != 1 {
		t.Fatalf("decode response %s: %v", decBody, err)
	}
	data, _ := base64.StdEncoding.DecodeString(dec.Payloads[0].Data)
	if string(data) != `{"password":"`+secret+`"}` || dec.Payloads[0].Metadata["encoding"] != b64("json/plain") {
		t.Fatalf("decoded %+v", dec.Payloads[0])
	}
}

func TestHTTPPreflight(t *testing.T) {
	srv := server(t, ServerOptions{Origins: []string{uiOrigin}, Token: "t0ken"})
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/decode", nil)
	req.Header.Set("Origin", uiOrigin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-namespace")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight status %d", resp.StatusCode)
	}
	h := resp.Header
	if h.Get("Access-Control-Allow-Origin") != uiOrigin || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("CORS headers %v", h)
	}
	allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
	for _, want := range []string{"authorization", "content-type", "x-namespace"} {
		if !strings.Contains(allowed, want) {
			t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, want)
		}
	}
	if !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("Access-Control-Allow-Methods %q", h.Get("Access-Control-Allow-Methods"))
	}
}

func TestHTTPRefusals(t *testing.T) {
	srv := server(t, ServerOptions{Origins: []string{uiOrigin}, Token: "t0ken", MaxBodyBytes: 1024})
	body := `{"payloads":[]}`
	cases := []struct {
		name    string
		headers map[string]string
		body    string
		want    int
	}{
		{"no token", map[string]string{"Origin": uiOrigin}, body, http.StatusUnauthorized},
		{"wrong token", map[string]string{"Authorization": "Bearer t0ke"}, body, http.StatusUnauthorized},
		{"not bearer", map[string]string{"Authorization": "t0ken"}, body, http.StatusUnauthorized},
		{"foreign origin", map[string]string{"Authorization": "Bearer t0ken", "Origin": "https://evil.example"}, body, http.StatusForbidden},
		{"too large", map[string]string{"Authorization": "Bearer t0ken"}, `{"payloads":[{"data":"` + strings.Repeat("A", 2048) + `"}]}`, http.StatusBadRequest},
		{"not json", map[string]string{"Authorization": "Bearer t0ken"}, "nope", http.StatusBadRequest},
		{"token ok", map[string]string{"Authorization": "Bearer t0ken"}, body, http.StatusOK},
	}
	for _, c := range cases {
		resp, got := post(t, srv.URL+"/decode", c.body, c.headers)
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d (%s), want %d", c.name, resp.StatusCode, got, c.want)
		}
		// The UI must be able to read a 401 to tell the user why.
		if c.want == http.StatusUnauthorized && c.headers["Origin"] == uiOrigin && resp.Header.Get("Access-Control-Allow-Origin") != uiOrigin {
			t.Errorf("%s: 401 without CORS headers", c.name)
		}
	}
}

func TestHTTPNoTokenConfigured(t *testing.T) {
	srv := server(t, ServerOptions{})
	resp, body := post(t, srv.URL+"/decode", `{"payloads":[]}`, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	resp, _ = post(t, srv.URL+"/decode", `{"payloads":[]}`, map[string]string{"Origin": uiOrigin})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("browser call without configured origins: status %d", resp.StatusCode)
	}
}

func TestHTTPUnknownKeyID(t *testing.T) {
	srv := server(t, ServerOptions{})
	body := `{"payloads":[{"metadata":{"encoding":"` + b64(EncodingEncrypted) + `","encryption-key-id":"` + b64("gone") + `"},"data":"` + b64(strings.Repeat("x", 40)) + `"}]}`
	resp, got := post(t, srv.URL+"/decode", body, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(got, `key id "gone"`) {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
}

func TestHTTPAuthorizeHook(t *testing.T) {
	srv := server(t, ServerOptions{Authorize: func(r *http.Request) error {
		if r.Header.Get("Authorization") != "Bearer user-jwt" {
			return errors.New("not signed in")
		}
		return nil
	}})
	resp, body := post(t, srv.URL+"/decode", `{"payloads":[]}`, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not signed in") {
		t.Fatalf("without token: %d %s", resp.StatusCode, body)
	}
	resp, body = post(t, srv.URL+"/decode", `{"payloads":[]}`, map[string]string{"Authorization": "Bearer user-jwt"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with token: %d %s", resp.StatusCode, body)
	}
}
