#!/usr/bin/env bash
# The cluster-in-a-box demo from a fresh clone: installs Debian's haproxy with apt-get when it
# is missing (and says so), installs the npm dependencies and builds, then runs
# `autoscaler demo` with any arguments given (for example --duration 300). Everything the demo
# starts runs on 127.0.0.1 and is stopped when it ends; its temp folder is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

if ! command -v haproxy >/dev/null 2>&1; then
  echo "demo: HAProxy is missing; installing Debian's haproxy package with apt-get"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy </dev/null
fi
[ -d node_modules ] || npm ci --no-audit --no-fund </dev/null
npm run build --silent </dev/null
exec node bin/autoscaler.js demo "$@"
