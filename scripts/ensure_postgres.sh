#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use is up: start the local cluster if it is installed and down.
# In CI (CI=true) a missing server is an error; elsewhere the PostgreSQL tests skip and say why.
set -u
host=${PGHOST:-127.0.0.1}
port=${PGPORT:-5432}
if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  done
  for _ in $(seq 1 30); do
    pg_isready -q -h "$host" -p "$port" 2>/dev/null && exit 0
    sleep 1
  done
fi
if [ -n "${CI:-}" ]; then
  echo "error: PostgreSQL is not reachable at $host:$port and could not be started; CI must run the PostgreSQL tests" >&2
  exit 1
fi
echo "warning: PostgreSQL is not reachable at $host:$port: the PostgreSQL tests will be skipped" >&2
exit 0
