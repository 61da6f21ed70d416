#!/usr/bin/env bash
# Start PostgreSQL and Redis on this machine if they are not running, then wait for both.
set -euo pipefail

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.5
done
echo "PostgreSQL or Redis did not come up on 127.0.0.1" >&2
exit 1
