// Package countproxy is an HTTP reverse proxy that counts what crosses it:
// requests by method and bytes each way. The store benchmarks put it in
// front of the S3 server, so that every request a worker makes to the
// store is seen, whatever client makes it (the SDK, Terraform's backend).
package countproxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Proxy forwards to one upstream and counts.
type Proxy struct {
	srv *http.Server

	mu       sync.Mutex
	requests map[string]int64
	in, out  atomic.Int64 // bytes from clients (bodies), to clients (bodies)
}

// Counts is what crossed the proxy since the last Reset.
type Counts struct {
	Requests map[string]int64 // by method
	// Up and Down are request and response bodies in bytes: what
	// clients uploaded to and downloaded from the store.
	Up, Down int64
}

// Total is the number of requests.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c.Requests {
		n += v
	}
	return n
}

// String lists the requests by method, sorted.
func (c Counts) String() string {
	keys := make([]string, 0, len(c.Requests))
	for k := range c.Requests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(strconv.FormatInt(c.Requests[k], 10))
	}
	return b.String()
}

// Serve proxies what arrives on l to upstream (http://host:port), dialling
// with dial (nil: the default dialer). It returns at once.
func Serve(l net.Listener, upstream string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	p := &Proxy{requests: map[string]int64{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	t := http.DefaultTransport.(*http.Transport).Clone()
	if dial != nil {
		t.DialContext = dial
	}
	t.MaxIdleConnsPerHost = 256
	rp.Transport = t
	// Path-style S3 signs the Host header: keep the client's.
	director := rp.Director
	rp.Director = func(r *http.Request) {
		host := r.Host
		director(r)
		r.Host = host
	}
	rp.ModifyResponse = func(res *http.Response) error {
		res.Body = &counting{ReadCloser: res.Body, n: &p.out}
		return nil
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests[r.Method]++
		p.mu.Unlock()
		if r.Body != nil {
			r.Body = &counting{ReadCloser: r.Body, n: &p.in}
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// Counts returns the counts so far.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := Counts{Requests: map[string]int64{}, Up: p.in.Load(), Down: p.out.Load()}
	for k, v := range p.requests {
		c.Requests[k] = v
	}
	return c
}

// Reset zeroes the counts.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = map[string]int64{}
	p.in.Store(0)
	p.out.Store(0)
}

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

type counting struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *counting) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}
