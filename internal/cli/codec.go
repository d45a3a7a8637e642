package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/codec"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

// loadCodec reads the payload key ring of --codec-keys or the environment;
// nil means payloads are plain. A ring that cannot be read is a usage
// error: the command must not go on and write plain payloads, or fail later
// on payloads it cannot read, with a less telling message.
func (a *app) loadCodec() (*workerhost.Codec, error) {
	c, err := workerhost.LoadCodec(a.codecKeys, a.getenv)
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	return c, nil
}

type codecServerFlags struct {
	addr      string
	origins   []string
	tokenFile string
}

func (a *app) codecServerCommand() *cobra.Command {
	var f codecServerFlags
	cmd := &cobra.Command{
		Use:   "codec-server",
		Short: "Serve the payload codec, so that the Temporal UI shows encrypted payloads decrypted",
		Long: `codec-server decrypts (and encrypts) payloads with the key ring of --codec-keys
at POST .../decode and .../encode, in the shape the Temporal Web UI and the
temporal CLI send. Point the UI's codec endpoint at http://ADDR (Settings >
Codec Server, or the UI server's codec.endpoint); the browser calls it, so the
UI's origin must be one of --cors-origin. The temporal CLI takes it as
--codec-endpoint. Anyone who can reach it can decrypt: keep it on loopback or a
private network, and with --auth-token-file require "Authorization: Bearer
TOKEN" (the temporal CLI's --codec-auth) from every caller.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.runCodecServer(ctx, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8081", "host:port to listen on")
	fl.StringSliceVar(&f.origins, "cors-origin", []string{"http://127.0.0.1:8233", "http://localhost:8233"}, "Temporal UI origins allowed to call from a browser (repeat or comma-separate; the default is the UI of gauntlet dev)")
	fl.StringVar(&f.tokenFile, "auth-token-file", "", "file holding a bearer token every request must carry")
	return cmd
}

func (a *app) runCodecServer(ctx context.Context, f codecServerFlags) error {
	c, err := a.loadCodec()
	if err != nil {
		return err
	}
	if c == nil {
		return usagef("codec-server needs the key ring: --codec-keys FILE, %s or %s", workerhost.EnvCodecKeysFile, workerhost.EnvCodecKeys)
	}
	opts := codec.ServerOptions{}
	for _, o := range f.origins {
		if err := checkOrigin(o); err != nil {
			return usagef("--cors-origin %q: %v", o, err)
		}
		opts.Origins = append(opts.Origins, o)
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return withCode(ExitUsage, fmt.Errorf("--auth-token-file: %w", err))
		}
		if opts.Token = strings.TrimSpace(string(b)); opts.Token == "" {
			return usagef("--auth-token-file %s is empty", f.tokenFile)
		}
	}
	addr, stop, served, err := serveCodec(f.addr, c, opts)
	if err != nil {
		return withCode(ExitUsage, fmt.Errorf("--addr: %w", err))
	}
	fmt.Fprintf(a.stdout, "codec server on http://%s (%s)\n", addr, c)
	if opts.Token == "" && !isLoopback(addr) {
		fmt.Fprintf(a.stderr, "warning: codec server on %s decrypts for anyone who can reach it; add --auth-token-file or listen on loopback\n", addr)
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("codec server on %s: %w", addr, err)
	}
	// A decode in flight finishes, so that a UI page being shown during a
	// restart does not end up half decrypted.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return stop(sctx)
}

// serveCodec serves c on addr. It listens before returning, so that a taken
// port fails the start; served reports the server stopping on its own.
func serveCodec(addr string, c *workerhost.Codec, opts codec.ServerOptions) (bound net.Addr, stop func(context.Context) error, served <-chan error, err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, nil, err
	}
	srv := &http.Server{Handler: codec.NewHTTPHandler(c, opts), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return l.Addr(), srv.Shutdown, errc, nil
}

// checkOrigin accepts what a browser sends as Origin: a scheme and host,
// no path. The handler compares origins as strings, so "http://ui/" would
// never match and the UI would only say the codec server is unreachable.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return errors.New("want scheme://host[:port], as the browser's address bar shows the UI, without a path or trailing slash")
	}
	return nil
}

func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// devCodecOrigins are the origins a browser may show the dev UI under: the
// address it listens on, and localhost for a loopback one.
func devCodecOrigins(uiAddr string) []string {
	origins := []string{"http://" + uiAddr}
	host, port, err := net.SplitHostPort(uiAddr)
	if err == nil && net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback() {
		origins = append(origins, "http://"+net.JoinHostPort("localhost", port))
	}
	return origins
}
