#!/usr/bin/env bash
# The walkthrough `make demo` runs: start berthd with its embedded defaults,
# put an image in the store, run containers from it, list them, read logs,
# stop and remove them. Set BERTH_DEMO_KEEP=1 to leave the engine running.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BERTH="$ROOT/.venv/bin/berth"
RUN_ROOT=${BERTH_RUN_ROOT:-/run/berth}
DATA_ROOT=${BERTH_DATA_ROOT:-/var/lib/berth}
export BERTH_HOST="unix://$RUN_ROOT/gateway.sock"
LOG=$(mktemp /tmp/berthd-demo.XXXXXX.log)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

started=""
if ! "$BERTH" version >/dev/null 2>&1; then
  step "Starting berthd (sockets in $RUN_ROOT, state in $DATA_ROOT, log in $LOG)"
  "$ROOT/.venv/bin/berthd" --run-root "$RUN_ROOT" --data-root "$DATA_ROOT" --log-format json >"$LOG" 2>&1 &
  started=$!
  for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.1; done
  "$BERTH" version >/dev/null || { echo "berthd did not come up; see $LOG"; exit 1; }
fi
cleanup() {
  "$BERTH" rm -f demo-web >/dev/null 2>&1 || true
  "$BERTH" rm -f web >/dev/null 2>&1 || true
  if [ -n "$started" ] && [ -z "${BERTH_DEMO_KEEP:-}" ]; then
    step "Stopping berthd"; kill -TERM "$started"; wait "$started" || true
  fi
}
trap cleanup EXIT

step "Building a demo image from Debian's busybox-static and importing it"
TAR=$(mktemp /tmp/berth-demo-rootfs.XXXXXX.tar)
"$ROOT/deploy/busybox-rootfs.sh" "$TAR"
show "$BERTH" import "$TAR" berth-demo/busybox:latest -c 'CMD ["sh"]'
rm -f "$TAR"
show "$BERTH" images

step "Pushing it to berth's own registry on 127.0.0.1, removing it, pulling it back"
REG_PORT=$("$ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG_ROOT=$(mktemp -d /tmp/berth-demo-registry.XXXXXX)
"$ROOT/.venv/bin/python" -m services.registry --listen "127.0.0.1:$REG_PORT" --root "$REG_ROOT" --log-format json >"$REG_ROOT.log" 2>&1 &
REG_PID=$!
"$ROOT/.venv/bin/python" -c 'import sys, time, urllib.request
for _ in range(100):
    try: urllib.request.urlopen(sys.argv[1], timeout=1); break
    except OSError: time.sleep(0.1)' "http://127.0.0.1:$REG_PORT/v2/"
REG_IMAGE="127.0.0.1:$REG_PORT/berth-demo/busybox:latest"
show "$BERTH" tag berth-demo/busybox "$REG_IMAGE"
show "$BERTH" push "$REG_IMAGE"
show "$BERTH" rmi "$REG_IMAGE" berth-demo/busybox
show "$BERTH" pull "$REG_IMAGE"
show "$BERTH" tag "$REG_IMAGE" berth-demo/busybox:latest
kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true; rm -rf "$REG_ROOT" "$REG_ROOT.log"

step "Running a container in the foreground"
show "$BERTH" run --rm berth-demo/busybox sh -c 'echo "hello from $(hostname), I am pid $$"'

step "Running a container in the background"
show "$BERTH" run -d --name demo-web --memory 64m berth-demo/busybox sh -c 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 1; done'
sleep 2
show "$BERTH" ps
show "$BERTH" logs --tail 2 demo-web

step "Stopping and removing it"
show "$BERTH" stop -t 2 demo-web
show "$BERTH" ps -a --filter name=demo-web
show "$BERTH" rm demo-web

step "Publishing a web server on port 8080 (bridge network, nftables DNAT)"
show "$BERTH" run -d -p 8080:80 --name web berth-demo/busybox httpd -f -p 80 -h /etc
show "$BERTH" ps
for _ in $(seq 50); do busybox wget -q -O /dev/null http://127.0.0.1:8080/hosts 2>/dev/null && break; sleep 0.1; done
show busybox wget -q -O - http://127.0.0.1:8080/hosts
show "$BERTH" stop web
show "$BERTH" rm web

step "Done: imported an image, pushed it to a registry and pulled it back, ran a foreground and a background container, listed them, read logs, published a web server on 127.0.0.1:8080 and fetched a page, stopped and removed everything."
