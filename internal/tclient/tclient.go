// Package tclient resolves Temporal connection settings from flags and the
// environment variables the temporal CLI uses, and dials a client with errors
// a person can act on.
package tclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// Environment variables, named as the temporal CLI names them so one set of
// settings serves both tools.
const (
	EnvAddress    = "TEMPORAL_ADDRESS"
	EnvNamespace  = "TEMPORAL_NAMESPACE"
	EnvTLSCert    = "TEMPORAL_TLS_CLIENT_CERT_PATH"
	EnvTLSKey     = "TEMPORAL_TLS_CLIENT_KEY_PATH"
	EnvTLSCA      = "TEMPORAL_TLS_SERVER_CA_CERT_PATH"
	EnvServerName = "TEMPORAL_TLS_SERVER_NAME"
	EnvAPIKey     = "TEMPORAL_API_KEY"
)

// Defaults match a local `gauntlet dev`.
const (
	DefaultAddress   = "127.0.0.1:7233"
	DefaultNamespace = "default"
)

// Options are the connection settings.
type Options struct {
	Address    string
	Namespace  string
	TLSCert    string
	TLSKey     string
	TLSCA      string
	ServerName string
	APIKey     string
}

// FromEnv fills the settings from the environment over the defaults; flags
// given explicitly are applied after it by the caller.
func FromEnv(getenv func(string) string) Options {
	o := Options{Address: DefaultAddress, Namespace: DefaultNamespace}
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	set(&o.Address, EnvAddress)
	set(&o.Namespace, EnvNamespace)
	set(&o.TLSCert, EnvTLSCert)
	set(&o.TLSKey, EnvTLSKey)
	set(&o.TLSCA, EnvTLSCA)
	set(&o.ServerName, EnvServerName)
	set(&o.APIKey, EnvAPIKey)
	return o
}

// TLSConfig returns nil when no TLS setting is given.
func (o Options) TLSConfig() (*tls.Config, error) {
	if o.TLSCert == "" && o.TLSKey == "" && o.TLSCA == "" && o.ServerName == "" {
		return nil, nil
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, fmt.Errorf("TLS: --tls-cert and --tls-key go together (got only one)")
	}
	cfg := &tls.Config{ServerName: o.ServerName, MinVersion: tls.VersionTLS12}
	if o.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("TLS: load client certificate %s and key %s: %w", o.TLSCert, o.TLSKey, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("TLS: read CA %s: %w", o.TLSCA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS: CA file %s holds no PEM certificate", o.TLSCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// ClientOptions builds SDK options; the caller may add a data converter,
// interceptors or a logger.
func (o Options) ClientOptions() (client.Options, error) {
	tlsCfg, err := o.TLSConfig()
	if err != nil {
		return client.Options{}, err
	}
	co := client.Options{
		HostPort:          o.Address,
		Namespace:         o.Namespace,
		Logger:            Discard(),
		ConnectionOptions: client.ConnectionOptions{TLS: tlsCfg},
	}
	if o.APIKey != "" {
		co.Credentials = client.NewAPIKeyStaticCredentials(o.APIKey)
	}
	return co, nil
}

// Dial connects and checks the server answers within timeout, so a wrong
// address fails in seconds with a sentence instead of hanging.
func Dial(ctx context.Context, o Options, timeout time.Duration, adjust ...func(*client.Options)) (client.Client, error) {
	co, err := o.ClientOptions()
	if err != nil {
		return nil, err
	}
	for _, f := range adjust {
		f(&co)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.DialContext(ctx, co)
	if err != nil {
		return nil, &UnreachableError{Address: o.Address, Namespace: o.Namespace, Err: err}
	}
	return c, nil
}

// UnreachableError says the Temporal frontend could not be reached.
type UnreachableError struct {
	Address, Namespace string
	Err                error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach Temporal at %s (namespace %s): %v; start one with `gauntlet dev` or set --address / %s", e.Address, e.Namespace, e.Err, EnvAddress)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Discard is an SDK logger that drops everything: the SDK otherwise prints a
// warning per client about a missing logger.
func Discard() sdklog.Logger { return discard{} }

type discard struct{}

func (discard) Debug(string, ...any) {}
func (discard) Info(string, ...any)  {}
func (discard) Warn(string, ...any)  {}
func (discard) Error(string, ...any) {}
