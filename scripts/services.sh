#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis servers that the tests use are running
# on 127.0.0.1 (PostgreSQL 5432 with trust auth for user postgres; Redis 6379).
# On a machine that has them running already, it does nothing. Otherwise it
# installs them from Debian's packages (apt-get) when absent, and starts them.
set -euo pipefail

say() { echo "services.sh: $*"; }

pg_up()    { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    say "$1 needs root (apt-get/pg_ctlcluster); run: sudo $0"; exit 1
  fi
}

if pg_up; then
  say "PostgreSQL is up on 127.0.0.1:5432"
else
  need_root "starting PostgreSQL"
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    say "PostgreSQL is not installed: apt-get install postgresql"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  conf=/etc/postgresql/$ver/main
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf/pg_hba.conf"; then
    say "allowing trust auth on 127.0.0.1 for the tests ($conf/pg_hba.conf)"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
  fi
  say "starting PostgreSQL $ver (pg_ctlcluster)"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
  for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  pg_up || { say "PostgreSQL did not come up"; exit 1; }
fi

if redis_up; then
  say "Redis is up on 127.0.0.1:6379"
else
  need_root "starting Redis"
  if ! command -v redis-server >/dev/null 2>&1; then
    say "Redis is not installed: apt-get install redis-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  say "starting Redis (redis-server, no persistence)"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/mtai-tests.log
  for _ in $(seq 1 30); do redis_up && break; sleep 0.2; done
  redis_up || { say "Redis did not come up"; exit 1; }
fi
