package countproxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCountsRequestsAndBodies(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Host != "store.example:9000" {
			t.Errorf("upstream saw Host %q, want the client's", r.Host)
		}
		io.WriteString(w, strings.Repeat("x", 10+len(b)))
	}))
	defer up.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Serve(l, up.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	do := func(method, body string) {
		req, _ := http.NewRequest(method, "http://"+l.Addr().String()+"/bucket/key", strings.NewReader(body))
		req.Host = "store.example:9000"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	do(http.MethodPut, "hello")
	do(http.MethodGet, "")
	do(http.MethodGet, "")
	c := p.Counts()
	if c.Requests["PUT"] != 1 || c.Requests["GET"] != 2 || c.Total() != 3 || c.Up != 5 || c.Down != 15+10+10 {
		t.Fatalf("counts %+v", c)
	}
	if c.String() != "GET=2 PUT=1" {
		t.Errorf("String %q", c.String())
	}
	p.Reset()
	if c := p.Counts(); c.Total() != 0 || c.Up != 0 || c.Down != 0 {
		t.Errorf("after Reset: %+v", c)
	}
}
