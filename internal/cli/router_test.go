package cli

import (
	"context"
	"fmt"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRouterCommandSplitsByWeight(t *testing.T) {
	hits := map[string]int{}
	backend := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[name]++
			fmt.Fprintf(w, `{"variant": %q}`, name)
		}))
	}
	stable, canary := backend("stable"), backend("canary")
	defer stable.Close()
	defer canary.Close()
	addr, _ := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	out := &testkit.Buffer{}
	go func() {
		a := &app{stdout: out, stderr: out, getenv: func(string) string { return "" }}
		root := a.rootCommand()
		root.SetArgs([]string{"router", "--addr", addr, "--variant", "stable=" + stable.URL + "=100", "--variant", "canary=" + canary.URL + "=0"})
		done <- codeOf(root.ExecuteContext(ctx))
	}()
	waitFor(t, func() bool { return strings.Contains(out.String(), "Routing 2 variants") })
	for range 20 {
		res, err := http.Post("http://"+addr+"/v1/predict", "application/json", strings.NewReader(`{"records": [{}]}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), "stable") {
			t.Fatalf("HTTP %d %s", res.StatusCode, body)
		}
	}
	cancel()
	if code := <-done; code != ExitOK || hits["canary"] != 0 || hits["stable"] != 20 {
		t.Fatalf("exit %d, hits %v", code, hits)
	}
	for _, bad := range [][]string{{"router"}, {"router", "--variant", "x=http://a=101"}, {"router", "--variant", "noweight"}} {
		if code, _, stderr := runCLI(t, nil, bad...); code != ExitUsage {
			t.Errorf("%v: exit %d %s", bad, code, stderr)
		}
	}
}
