#!/bin/sh
# Creates or upgrades Temporal's PostgreSQL schemas. Safe to run on every
# `docker-compose up`: setup-schema runs only for a database created now,
# update-schema applies only versions newer than the recorded one.
set -eu
tool() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" --pw "$POSTGRES_PWD" "$@"; }
for db in temporal:temporal temporal_visibility:visibility; do
  name=${db%%:*}
  dir=/etc/temporal/schema/postgresql/v12/${db#*:}/versioned
  if tool --db "$name" create-database 2>/tmp/create.err; then
    tool --db "$name" setup-schema -v 0.0
  elif ! grep -q "already exists" /tmp/create.err; then
    cat /tmp/create.err >&2
    exit 1
  fi
  tool --db "$name" update-schema -d "$dir"
done
echo "temporal schemas are up to date"
