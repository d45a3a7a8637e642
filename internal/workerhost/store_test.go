package workerhost

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestStoreFlagsPrecedence(t *testing.T) {
	state := t.TempDir()
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		store   string
		dir     string
		bytes   int64
		warning bool
		err     string
	}{
		{name: "defaults", bytes: 20 << 30, dir: ""},
		{name: "environment", env: map[string]string{EnvStore: "s3://b/p", EnvCacheDir: "/c", EnvCacheSize: "1MiB"}, store: "s3://b/p", dir: "/c", bytes: 1 << 20},
		{name: "flags win", args: []string{"--store", "s3://x/y", "--cache-dir", "/d", "--cache-size", "0"}, env: map[string]string{EnvStore: "s3://b/p", EnvCacheSize: "1MiB"}, store: "s3://x/y", dir: "/d", bytes: -1},
		{name: "old variable", env: map[string]string{EnvRegistry: "s3://b/p"}, store: "s3://b/p", bytes: 20 << 30, warning: true},
		{name: "old variable agrees", env: map[string]string{EnvRegistry: "s3://b/p", EnvStore: "s3://b/p"}, store: "s3://b/p", bytes: 20 << 30},
		{name: "old variable differs", env: map[string]string{EnvRegistry: "s3://b/old?endpoint=http://h", EnvStore: "s3://b/p"}, err: "GAUNTLET_REGISTRY=s3://b/old and the store s3://b/p differ"},
		{name: "bad size", args: []string{"--cache-size", "lots"}, err: `--cache-size "lots"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f StoreFlags
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			f.Register(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			cfg, warning, err := f.Config(state, env(c.env))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "endpoint") {
					t.Fatalf("err %v, want %q without the query", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Store != c.store || cfg.CacheDir != c.dir || cfg.CacheBytes != c.bytes || cfg.StateDir != state || (warning != "") != c.warning {
				t.Errorf("got %+v, warning %q", cfg, warning)
			}
		})
	}
}

func TestParseCacheSize(t *testing.T) {
	for in, want := range map[string]int64{"20GiB": 20 << 30, "500MB": 500_000_000, "1048576": 1 << 20, "0": -1} {
		if got, err := ParseCacheSize(in); err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseCacheSize("-1"); err == nil {
		t.Error("-1 accepted")
	}
}
