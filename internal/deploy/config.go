package deploy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Environment variables the flags of Flags fall back to.
const (
	EnvTarget         = "GAUNTLET_DEPLOY_TARGET"
	EnvFleetRouters   = "GAUNTLET_FLEET_ROUTERS" // MODEL=URL,MODEL=URL
	EnvFleetTokenFile = "GAUNTLET_FLEET_ADMIN_TOKEN_FILE"
	EnvFleetProm      = "GAUNTLET_FLEET_PROMETHEUS"
)

// Default Prometheus matchers of a fleet: the jobs of
// deploy/prometheus/prometheus.yml that scrape the router and the servers.
const (
	DefaultRouterMatchers  = `job="gauntlet-router"`
	DefaultServingMatchers = `job="gauntlet-model-servers"`
)

// Config chooses a worker's deployment targets.
type Config struct {
	// Default is the kind a step that names none gets; empty means
	// Embedded.
	Default string
	// Fleet, when set, configures the fleet target; its Store and Logger
	// default to the worker's.
	Fleet *FleetOptions
}

// Secrets are the values a log must mask: the fleet's admin token.
func (c Config) Secrets() []string {
	if c.Fleet == nil {
		return nil
	}
	return []string{c.Fleet.AdminToken}
}

// Describe says what the targets are, for a start-up line.
func (c Config) Describe() string {
	def := c.Default
	if def == "" {
		def = Embedded
	}
	if c.Fleet == nil {
		return def + " (the only target)"
	}
	models := make([]string, 0, len(c.Fleet.Routers))
	for m := range c.Fleet.Routers {
		models = append(models, m)
	}
	slices.Sort(models)
	var b strings.Builder
	fmt.Fprintf(&b, "%s by default; fleet of", def)
	for _, m := range models {
		fmt.Fprintf(&b, " %s (router %s)", m, c.Fleet.Routers[m])
	}
	fmt.Fprintf(&b, ", analysed through Prometheus %s", c.Fleet.Prometheus.URL)
	return b.String()
}

// Targets builds the Set: Local from local, and the fleet when configured.
func (c Config) Targets(local Options) (*Set, error) {
	def := c.Default
	if def == "" {
		def = Embedded
	}
	if err := ValidKind(def); err != nil {
		return nil, err
	}
	targets := []Target{NewLocal(local)}
	if c.Fleet != nil {
		o := *c.Fleet
		if o.Store == nil && local.Workspace != nil {
			o.Store = local.Workspace.Store()
		}
		if o.Logger == nil {
			o.Logger = local.Logger
		}
		f, err := NewFleet(o)
		if err != nil {
			return nil, err
		}
		targets = append(targets, f)
	} else if def == FleetKind {
		return nil, errors.New("deployment target fleet: the fleet's settings are missing (--fleet-router, --fleet-admin-token-file, --fleet-prometheus)")
	}
	return NewSet(def, targets...)
}

// Flags are the deployment target flags of the worker and `gauntlet dev`.
type Flags struct {
	Target          string
	Routers         []string
	TokenFile       string
	Prometheus      string
	RouterMatchers  string
	ServingMatchers string
	ReadyTimeout    time.Duration
	fs              *pflag.FlagSet
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.Target, "deploy-target", Embedded, "where canary-deploy and monitor steps deploy when a step names no target: embedded (a router and model servers inside this process) or fleet (long-running gauntlet router and gauntlet serve processes, driven over their admin APIs) (env "+EnvTarget+")")
	fs.StringArrayVar(&f.Routers, "fleet-router", nil, "MODEL=URL: the router of a model's fleet, with variants stable and canary (repeatable; env "+EnvFleetRouters+", comma-separated)")
	fs.StringVar(&f.TokenFile, "fleet-admin-token-file", "", "file holding the bearer token of the fleet's router and model server admin APIs (env "+EnvFleetTokenFile+")")
	fs.StringVar(&f.Prometheus, "fleet-prometheus", "", "URL of the Prometheus that scrapes the fleet's routers and model servers, which canary analysis asks (env "+EnvFleetProm+")")
	fs.StringVar(&f.RouterMatchers, "fleet-router-matchers", DefaultRouterMatchers, "PromQL label matchers selecting the routers' series in --fleet-prometheus")
	fs.StringVar(&f.ServingMatchers, "fleet-serving-matchers", DefaultServingMatchers, "PromQL label matchers selecting the model servers' series in --fleet-prometheus")
	fs.DurationVar(&f.ReadyTimeout, "fleet-ready-timeout", 2*time.Minute, "how long to wait for a fleet's model server to serve the version asked for")
}

func (f *Flags) changed(name string) bool {
	if f.fs == nil {
		return false
	}
	fl := f.fs.Lookup(name)
	return fl != nil && fl.Changed
}

// Config resolves the flags (explicit flags, then the environment, then
// the defaults) and reads the admin token file. A fleet is configured when
// the target is fleet or any fleet setting is given; then all of them are
// required.
func (f *Flags) Config(getenv func(string) string) (Config, error) {
	pick := func(flag, env, v string) string {
		if !f.changed(flag) && getenv(env) != "" {
			return getenv(env)
		}
		return v
	}
	c := Config{Default: pick("deploy-target", EnvTarget, f.Target)}
	if err := ValidKind(c.Default); err != nil {
		return c, fmt.Errorf("--deploy-target: %w", err)
	}
	routers := f.Routers
	if !f.changed("fleet-router") && getenv(EnvFleetRouters) != "" {
		routers = strings.Split(getenv(EnvFleetRouters), ",")
	}
	tokenFile := pick("fleet-admin-token-file", EnvFleetTokenFile, f.TokenFile)
	prom := pick("fleet-prometheus", EnvFleetProm, f.Prometheus)
	if c.Default != FleetKind && len(routers) == 0 && tokenFile == "" && prom == "" {
		return c, nil
	}
	var missing []string
	for _, m := range []struct{ flag, v string }{{"--fleet-router", strings.Join(routers, "")}, {"--fleet-admin-token-file", tokenFile}, {"--fleet-prometheus", prom}} {
		if m.v == "" {
			missing = append(missing, m.flag)
		}
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("the fleet deployment target needs %s", strings.Join(missing, ", "))
	}
	o := &FleetOptions{Routers: map[string]string{}, ReadyTimeout: f.ReadyTimeout,
		Prometheus: Prometheus{URL: prom, RouterMatchers: f.RouterMatchers, ServingMatchers: f.ServingMatchers}}
	for _, r := range routers {
		name, u, ok := strings.Cut(strings.TrimSpace(r), "=")
		if !ok || name == "" || u == "" {
			return c, fmt.Errorf("--fleet-router %q: want MODEL=URL", r)
		}
		if _, dup := o.Routers[name]; dup {
			return c, fmt.Errorf("--fleet-router: two routers for %s", name)
		}
		o.Routers[name] = u
	}
	tok, err := ReadAdminToken(tokenFile)
	if err != nil {
		return c, fmt.Errorf("--fleet-admin-token-file: %w", err)
	}
	o.AdminToken = tok
	if err := o.validate(); err != nil {
		return c, err
	}
	c.Fleet = o
	return c, nil
}
