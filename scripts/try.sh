#!/usr/bin/env bash
# A one-folder autoscaler installation driving a real HAProxy on loopback, start to finish:
# init, two local web backends added with add-host, HAProxy started on the generated config,
# requests spread over both, one removed with a confirmed reload, requests go to the other.
# Installs HAProxy with apt-get when it is missing (and says so), builds the CLI, and leaves
# no process or file behind. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

if ! command -v haproxy >/dev/null 2>&1; then
  echo "try: HAProxy is missing; installing Debian's haproxy package with apt-get"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy </dev/null
fi
[ -d node_modules ] || npm ci --no-audit --no-fund </dev/null
npm run build --silent </dev/null

dir=$(mktemp -d "${TMPDIR:-/tmp}/autoscaler-try-XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$dir/haproxy.pid" ] && kill "$(cat "$dir/haproxy.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

as() { echo "\$ autoscaler $*"; node bin/autoscaler.js "$@" --config "$dir/autoscaler.ini"; }
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
backend() { # a tiny web app that answers with its name
  node -e 'require("http").createServer((q,r)=>r.end(process.argv[1]+"\n")).listen(+process.argv[2],"127.0.0.1")' "$1" "$2" &
  pids+=($!)
}
get() { node -e 'fetch(process.argv[1]).then(r=>r.text()).then(t=>process.stdout.write(t))' "http://127.0.0.1:$1/"; }

front=$(free_port); a=$(free_port); b=$(free_port)
backend web-a "$a"; backend web-b "$b"

as init --set haproxy.config=haproxy.cfg --set haproxy.master_socket=master.sock \
  --set 'haproxy.reload_command=kill -USR2 $(cat haproxy.pid)' --set master.state_dir=state >/dev/null
# The shipped template binds :80 and drops privileges; here it runs on a loopback port as you.
sed -i -e "s/^\(\s*\)bind :80\s*$/\1bind 127.0.0.1:$front/" -e '/^\s*\(chroot\|user\|group\) /d' \
  -e '/^\s*log \/dev\/log/d' -e "s#stats socket /run/haproxy/admin.sock#stats socket $dir/admin.sock#" \
  "$dir/haproxy.cfg.tmpl"

as add-host 127.0.0.1 "$a" --name web-a --no-reload
as add-host 127.0.0.1 "$b" --name web-b --no-reload
(cd "$dir" && haproxy -W -S "$dir/master.sock" -f haproxy.cfg -p haproxy.pid -D)
for _ in $(seq 50); do get "$front" >/dev/null 2>&1 && break; sleep 0.1; done

echo; echo "four requests through HAProxy on 127.0.0.1:$front:"
for _ in 1 2 3 4; do printf '  %s' "$(get "$front")"; echo; done
echo
as remove-host web-a
echo; echo "four requests after removing web-a:"
for _ in 1 2 3 4; do printf '  %s' "$(get "$front")"; echo; done
echo
as hosts
echo; echo "try: done; $dir and every process started here are removed on exit."
