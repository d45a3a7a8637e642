package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/router"
)

func (a *app) routerCommand() *cobra.Command {
	var addr, tokenFile, keyHeader, keyField string
	var variants []string
	cmd := &cobra.Command{
		Use:   "router --variant NAME=URL=WEIGHT...",
		Short: "Split prediction traffic between model servers by weight, sticky per request key",
		Long: `router sends each POST /v1/predict to one of the model servers given with
--variant, in proportion to their weights; a request carrying the key header
(X-Request-Key by default) always reaches the same variant, and the header
X-Gauntlet-Variant pins one for testing. /metrics counts requests, errors and
latency per variant. With --admin-token-file, PUT /admin/weights and
/admin/variants (bearer token) change the split without a restart: that is
what canary deployment drives.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := a.routerOptions(variants, tokenFile, keyHeader, keyField)
			if err != nil {
				return err
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return usagef("--addr %q: want host:port (%v)", addr, err)
			}
			r, err := router.New(opts)
			if err != nil {
				return usagef("%v", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.listenAndServe(ctx, addr, r, fmt.Sprintf("Routing %d variants", len(opts.Variants)))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", "127.0.0.1:8090", "host:port to listen on")
	fl.StringArrayVar(&variants, "variant", nil, "NAME=URL=WEIGHT of a model server (repeatable), e.g. stable=http://127.0.0.1:8080=100")
	fl.StringVar(&tokenFile, "admin-token-file", "", "file holding the bearer token of the admin API (default: the admin API is off)")
	fl.StringVar(&keyHeader, "key-header", "X-Request-Key", "header whose value keeps a client on one variant")
	fl.StringVar(&keyField, "key-field", "", "top-level JSON field used as the key when the header is absent")
	return cmd
}

func (a *app) routerOptions(variants []string, tokenFile, keyHeader, keyField string) (router.Options, error) {
	var o router.Options
	if len(variants) == 0 {
		return o, usagef("--variant NAME=URL=WEIGHT is required at least once")
	}
	for _, v := range variants {
		// The URL holds '=' only in its query, which a model server's base
		// URL has no use for: split at the first and the last '='.
		first, last := strings.Index(v, "="), strings.LastIndex(v, "=")
		if first <= 0 || last == first {
			return o, usagef("--variant %q: want NAME=URL=WEIGHT", v)
		}
		w, err := strconv.Atoi(v[last+1:])
		if err != nil || w < 0 || w > 100 {
			return o, usagef("--variant %q: weight %q is not a whole number from 0 to 100", v, v[last+1:])
		}
		o.Variants = append(o.Variants, router.Variant{Name: v[:first], URL: v[first+1 : last], Weight: w})
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return o, withCode(ExitUsage, fmt.Errorf("--admin-token-file: %w", err))
		}
		if o.AdminToken = strings.TrimSpace(string(b)); o.AdminToken == "" {
			return o, usagef("--admin-token-file %s is empty", tokenFile)
		}
	}
	o.KeyHeader, o.KeyField = keyHeader, keyField
	return o, nil
}

// listenAndServe serves h until ctx ends, then drains requests in flight.
func (a *app) listenAndServe(ctx context.Context, addr string, h http.Handler, what string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(a.stdout, "%s at http://%s\n", what, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
