package fleettest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostgresPort is the port every fleet PostgreSQL listens on, on its
// host's address.
const PostgresPort = 5432

// Postgres is a PostgreSQL server on a host. Applications log in over the
// fleet's network as User with a password; the superuser is reachable only
// through the server's Unix socket, by the postgres OS user.
type Postgres struct {
	Host *Host
	Proc *Proc
	User string
	// Startup is how long the server took from start until the
	// application role could log in over the network; Init is initdb's.
	Startup, Init time.Duration

	password string
	sockDir  string
	psql     string
}

// StartPostgres initialises a cluster in the host's private directory and
// runs it as the postgres user (the server refuses root). The data is on
// the host's tmpfs, so durability settings (fsync) are off: a test has no
// disk to protect, and they only cost time.
func StartPostgres(t testing.TB, h *Host) *Postgres {
	t.Helper()
	initdb, postgres := Tool(t, "initdb"), Tool(t, "postgres")
	p := &Postgres{Host: h, User: "temporal", psql: Tool(t, "psql"), password: secret(t)}
	base := filepath.Join(h.Dir(), "postgres")
	data := filepath.Join(base, "data")
	p.sockDir = filepath.Join(base, "run")
	if _, err := h.Output(Spec{Args: []string{"install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", base, p.sockDir}}); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	initStart := time.Now()
	if _, err := h.Output(Spec{User: "postgres", Args: []string{initdb, "-D", data, "-U", "postgres",
		"--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"}}); err != nil {
		t.Fatalf("fleettest: initdb: %v", err)
	}
	p.Init = time.Since(initStart)
	hba := filepath.Join(h.f.ConfDir(h.Name+"-postgres"), "pg_hba.conf")
	rules := "local all postgres peer\n" +
		fmt.Sprintf("host all %s %s scram-sha-256\n", p.User, subnet)
	if err := os.WriteFile(hba, []byte(rules), 0o644); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	start := time.Now()
	proc, err := h.Start("postgres", Spec{User: "postgres", Args: []string{postgres, "-D", data,
		"-c", "listen_addresses=" + h.IP.String(),
		"-c", fmt.Sprintf("port=%d", PostgresPort),
		"-c", "unix_socket_directories=" + p.sockDir,
		"-c", "hba_file=" + hba,
		// Temporal's four services each keep their own pools.
		"-c", "max_connections=200",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		// A failing statement is logged without its text, which could
		// hold a password (CREATE ROLE ... PASSWORD).
		"-c", "log_min_error_statement=panic",
	}}, syscall.SIGINT) // SIGINT: fast shutdown; SIGTERM would wait for clients
	if err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	p.Proc = proc
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.waitSocket(ctx); err != nil {
		t.Fatalf("fleettest: PostgreSQL on %s: %v", h.Name, err)
	}
	role := fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s';\n", p.User, p.password)
	if _, err := h.Output(Spec{User: "postgres", Args: []string{p.psql, "-h", p.sockDir, "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q"},
		Stdin: strings.NewReader(role)}); err != nil {
		t.Fatalf("fleettest: create role %s: %v", p.User, err)
	}
	if _, err := p.Query(ctx, h, "postgres", "SELECT 1"); err != nil {
		t.Fatalf("fleettest: PostgreSQL on %s: %v", h.Name, err)
	}
	p.Startup = time.Since(start)
	return p
}

// waitSocket waits until the server accepts the superuser on its socket.
func (p *Postgres) waitSocket(ctx context.Context) error {
	for {
		_, err := p.Host.OutputContext(ctx, Spec{User: "postgres", Args: []string{p.psql, "-h", p.sockDir, "-U", "postgres", "-d", "postgres", "-Atc", "SELECT 1"}})
		if err == nil {
			return nil
		}
		select {
		case <-p.Proc.Done():
			return fmt.Errorf("exited (%v): %s", p.Proc.Err(), tail(p.Proc.Output(), 20))
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Addr is the server's host:port on the fleet's network.
func (p *Postgres) Addr() string { return p.Host.Addr(PostgresPort) }

// Password is the application role's password. Pass it to a process in
// its environment, never in its arguments.
func (p *Postgres) Password() string { return p.password }

// Env is a libpq environment (psql and friends) for the application role.
func (p *Postgres) Env() []string {
	return []string{
		"PGHOST=" + p.Host.IP.String(),
		fmt.Sprintf("PGPORT=%d", PostgresPort),
		"PGUSER=" + p.User,
		"PGPASSWORD=" + p.password,
	}
}

// Query runs sql with psql on host from as the application role, over the
// network, and returns its unaligned output.
func (p *Postgres) Query(ctx context.Context, from *Host, db, sql string) (string, error) {
	out, err := from.OutputContext(ctx, Spec{Args: []string{p.psql, "-d", db, "-v", "ON_ERROR_STOP=1", "-At"},
		Env: p.Env(), Stdin: strings.NewReader(sql)})
	return strings.TrimSpace(string(out)), err
}

// secret returns a random credential: hex, so that it needs no quoting in
// SQL, YAML or a URL.
func secret(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	return hex.EncodeToString(b)
}
