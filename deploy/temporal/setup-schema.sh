#!/bin/sh
# Creates or upgrades Temporal's PostgreSQL schemas. Safe to run on every
# `docker-compose up`: setup-schema runs only for a database created now,
# update-schema applies only versions newer than the recorded one. The
# schemas are the ones built into temporal-sql-tool, so the tool's version
# is the server's; the password reaches it in its environment, never on its
# command line.
set -eu
export SQL_PASSWORD="$POSTGRES_PWD"
tool() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"; }
err=$(mktemp)
trap 'rm -f "$err"' EXIT
for db in temporal:temporal temporal_visibility:visibility; do
  name=${db%%:*}
  if tool --db "$name" create-database 2>"$err"; then
    tool --db "$name" setup-schema -v 0.0
  elif ! grep -q "already exists" "$err"; then
    cat "$err" >&2
    exit 1
  fi
  tool --db "$name" update-schema --schema-name "postgresql/v12/${db#*:}"
done
echo "temporal schemas are up to date"
