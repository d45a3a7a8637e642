package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("t0ken-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fleetArgs := []string{"--fleet-router", "credit-risk=http://router:8080", "--fleet-admin-token-file", token, "--fleet-prometheus", "http://prometheus:9090"}
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		def     string
		fleet   bool
		routers string
		err     string
	}{
		{name: "defaults", def: Embedded},
		{name: "fleet by flags", args: append([]string{"--deploy-target", "fleet"}, fleetArgs...), def: FleetKind, fleet: true, routers: "map[credit-risk:http://router:8080]"},
		{name: "fleet beside the embedded default", args: fleetArgs, def: Embedded, fleet: true, routers: "map[credit-risk:http://router:8080]"},
		{name: "fleet by environment", env: map[string]string{EnvTarget: "fleet", EnvFleetRouters: "a=http://ra:1, b=http://rb:2", EnvFleetTokenFile: token, EnvFleetProm: "http://p:9090"},
			def: FleetKind, fleet: true, routers: "map[a:http://ra:1 b:http://rb:2]"},
		{name: "flags win", args: []string{"--deploy-target", "embedded"}, env: map[string]string{EnvTarget: "fleet"}, def: Embedded},
		{name: "fleet without its settings", args: []string{"--deploy-target", "fleet"}, err: "needs --fleet-router, --fleet-admin-token-file, --fleet-prometheus"},
		{name: "no token file", args: []string{"--fleet-router", "m=http://r:1", "--fleet-prometheus", "http://p:1"}, err: "needs --fleet-admin-token-file"},
		{name: "missing token file", args: []string{"--fleet-router", "m=http://r:1", "--fleet-prometheus", "http://p:1", "--fleet-admin-token-file", filepath.Join(dir, "nope")}, err: "--fleet-admin-token-file: admin token file: open"},
		{name: "bad router", args: []string{"--fleet-router", "http://r:1", "--fleet-prometheus", "http://p:1", "--fleet-admin-token-file", token}, err: `--fleet-router "http://r:1": want MODEL=URL`},
		{name: "two routers", args: append([]string{"--fleet-router", "credit-risk=http://r2:1"}, fleetArgs...), err: "two routers for credit-risk"},
		{name: "unknown target", args: []string{"--deploy-target", "cloud"}, err: `deployment target "cloud": want embedded or fleet`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f Flags
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			f.Register(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := f.Config(func(k string) string { return c.env[k] })
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				if err != nil && strings.Contains(err.Error(), "t0ken") {
					t.Fatalf("the error holds the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Default != c.def || (cfg.Fleet != nil) != c.fleet {
				t.Fatalf("config %+v", cfg)
			}
			if !c.fleet {
				if cfg.Secrets() != nil {
					t.Errorf("secrets %v without a fleet", cfg.Secrets())
				}
				return
			}
			if got := fmt.Sprint(cfg.Fleet.Routers); got != c.routers {
				t.Errorf("routers %s, want %s", got, c.routers)
			}
			if cfg.Fleet.AdminToken != "t0ken-from-file" || len(cfg.Secrets()) != 1 || cfg.Secrets()[0] != "t0ken-from-file" {
				t.Errorf("token not read, or not listed as a secret")
			}
			if cfg.Fleet.Prometheus.RouterMatchers != DefaultRouterMatchers || cfg.Fleet.Prometheus.ServingMatchers != DefaultServingMatchers {
				t.Errorf("matchers %+v", cfg.Fleet.Prometheus)
			}
			if d := cfg.Describe(); strings.Contains(d, "t0ken") || !strings.Contains(d, "fleet of") {
				t.Errorf("describe: %q", d)
			}
		})
	}
}

// A worker configured for the fleet builds both targets; one whose fleet
// settings do not hold fails before it joins.
func TestConfigTargets(t *testing.T) {
	f := newFixture(t)
	opts := Options{StateDir: f.state, Workspace: f.ws}
	set, err := Config{Default: FleetKind, Fleet: &FleetOptions{Routers: map[string]string{modelName: "http://router:8080"}, AdminToken: "x", Prometheus: Prometheus{URL: "http://p:9090"}}}.Targets(opts)
	if err != nil {
		t.Fatal(err)
	}
	if tg, err := set.Get(""); err != nil || tg.Kind() != FleetKind {
		t.Fatalf("default %v, %v", tg, err)
	}
	if tg, err := set.Get(Embedded); err != nil || tg.Kind() != Embedded {
		t.Fatalf("embedded %v, %v", tg, err)
	}
	if _, err := (Config{Default: FleetKind}).Targets(opts); err == nil {
		t.Error("the fleet as default without its settings was accepted")
	}
	if _, err := (Config{Fleet: &FleetOptions{Routers: map[string]string{modelName: "router:8080"}, AdminToken: "x", Prometheus: Prometheus{URL: "http://p:9090"}}}).Targets(opts); err == nil {
		t.Error("a router that is not a URL was accepted")
	}
}
