package fleettest

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestPostgresAnswersAcrossHosts(t *testing.T) {
	f := New(t)
	db, app := f.AddHost("db"), f.AddHost("app")
	pg := StartPostgres(t, db)
	t.Logf("PostgreSQL: initdb %s, accepted %s over the network %s after start", pg.Init.Round(time.Millisecond), pg.User, pg.Startup.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	out, err := pg.Query(ctx, app, "postgres", "SELECT inet_server_addr(), current_user, version()")
	if err != nil {
		t.Fatalf("query from app: %v", err)
	}
	if !strings.HasPrefix(out, db.IP.String()+"|temporal|PostgreSQL ") {
		t.Fatalf("query from app: %q; want the server's address %s, the role and the version", out, db.IP)
	}
	if _, err := pg.Query(ctx, app, "postgres", "CREATE DATABASE probe"); err != nil {
		t.Fatalf("the application role cannot create a database: %v", err)
	}

	// A wrong password and the superuser are refused over the network, and
	// the refusal does not echo the password.
	wrong := Spec{Args: []string{pg.psql, "-d", "postgres", "-c", "SELECT 1"},
		Env: append(pg.Env(), "PGPASSWORD=not-"+pg.Password())}
	if _, err := app.Output(wrong); err == nil || !strings.Contains(err.Error(), "password authentication failed") || strings.Contains(err.Error(), pg.Password()) {
		t.Fatalf("wrong password: %v; want a clear refusal without the password", err)
	}
	super := Spec{Args: []string{pg.psql, "-d", "postgres", "-c", "SELECT 1"}, Env: append(pg.Env(), "PGUSER=postgres")}
	if _, err := app.Output(super); err == nil {
		t.Fatal("the superuser logged in over the network")
	}

	if err := pg.Proc.Stop(30 * time.Second); err != nil {
		t.Fatalf("fast shutdown: %v", err)
	}
	if strings.Contains(pg.Proc.Output(), pg.Password()) {
		t.Fatal("the server log holds the password")
	}
}
