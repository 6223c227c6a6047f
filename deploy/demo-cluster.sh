#!/usr/bin/env bash
# The walkthrough `make demo-cluster` runs: one machine standing in for three hosts.
# etcd and three berth nodes, each node in its own network namespace with its own
# roots, joined by an underlay bridge this script makes; an overlay network across
# them; a web server on node 1 fetched by name from node 3; node 2 killed (its
# endpoints released when its lease expires) and brought back (its container,
# still running under conmon, published again). Everything it made is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="$ROOT/.venv/bin/python"
TAG=bd$(printf '%04x' $((RANDOM % 65536)))
WORK=$(mktemp -d "/tmp/$TAG-XXXX")
TTL=4
# The underlay: a /24 no route of this host touches, and free ports for etcd
# (the same choice the cluster tests make).
SUBNET=$("$PY" -c 'from tests.support.cluster import free_subnet; print(free_subnet())')
PREFIX=${SUBNET%.0/24}
STORE_PORT=$("$PY" -c 'from tests.support.cluster import free_port; print(free_port())')
PEER_PORT=$("$PY" -c 'from tests.support.cluster import free_port; print(free_port())')
STORE="http://$PREFIX.1:$STORE_PORT"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
berth() { local n=$1; shift; "$ROOT/.venv/bin/berth" -H "unix://$WORK/n$n/run/gateway.sock" "$@"; }
declare -A BERTHD=()
ETCD=""

start_node() {
  local n=$1
  mkdir -p "$WORK/n$n"
  nsenter --net="/run/netns/$TAG-n$n" "$PY" -m services.berthd --run-root "$WORK/n$n/run" \
    --data-root "$WORK/n$n/data" --log-format json --services image,network,volume,container,gateway \
    --cluster-store "$STORE" --node-name "node$n" --cluster-advertise "$PREFIX.1$n" --cluster-ttl $TTL \
    >>"$WORK/n$n/berthd.log" 2>&1 &
  BERTHD[$n]=$!
}

wait_node() {
  for _ in $(seq 600); do berth "$1" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "node $1 did not come up; its log:"; tail -20 "$WORK/n$1/berthd.log"; return 1
}

kill_node() {
  # SIGKILL the engine (berthd and its services), not the containers' monitors.
  local pid=${BERTHD[$1]} children
  children=$(pgrep -P "$pid" || true)
  kill -KILL $children "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  set +e
  step "Removing everything the demo made"
  for n in 1 2 3; do
    [ -S "$WORK/n$n/run/gateway.sock" ] && berth "$n" rm -f $(berth "$n" ps -aq 2>/dev/null) >/dev/null 2>&1
  done
  berth 1 network rm demo-overlay >/dev/null 2>&1
  for n in "${!BERTHD[@]}"; do kill -TERM "${BERTHD[$n]}" 2>/dev/null; done
  for n in "${!BERTHD[@]}"; do wait "${BERTHD[$n]}" 2>/dev/null; done
  [ -n "$ETCD" ] && { kill "$ETCD"; wait "$ETCD" 2>/dev/null; }
  for n in 1 2 3; do
    awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | xargs -r umount -l
    ip netns del "$TAG-n$n" 2>/dev/null
    ip link del "$TAG-v$n" 2>/dev/null
  done
  ip link del "$TAG" 2>/dev/null
  rm -rf "$WORK"
  echo "removed: containers, the overlay network, three engines, etcd, namespaces $TAG-n1..3, bridge $TAG, $WORK"
}
trap cleanup EXIT

step "Underlay: bridge $TAG ($SUBNET) and three network namespaces, one per node"
# (the underlay stands for the wire between hosts; where the host's bridge-nf-call-iptables is 1
# its frames still meet the host's netfilter: tests/support/cluster.py puts its wire in a namespace)
ip link add "$TAG" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0 && ip addr add "$PREFIX.1/24" dev "$TAG" && ip link set "$TAG" up
for n in 1 2 3; do
  ip netns add "$TAG-n$n"
  ip link add "$TAG-v$n" type veth peer name eth0 netns "$TAG-n$n"
  ip link set "$TAG-v$n" master "$TAG" up
  ip -n "$TAG-n$n" addr add "$PREFIX.1$n/24" dev eth0
  ip -n "$TAG-n$n" link set eth0 up && ip -n "$TAG-n$n" link set lo up
  echo "node$n: netns $TAG-n$n, address $PREFIX.1$n, roots $WORK/n$n"
done

step "etcd, the cluster store, at $STORE (data in $WORK/etcd)"
etcd --name "$TAG" --data-dir "$WORK/etcd" --listen-client-urls "$STORE,http://127.0.0.1:$STORE_PORT" \
  --advertise-client-urls "$STORE" --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "$TAG=http://127.0.0.1:$PEER_PORT" >"$WORK/etcd.log" 2>&1 &
ETCD=$!
for _ in $(seq 100); do "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$STORE_PORT/health', timeout=1)" 2>/dev/null && break; sleep 0.2; done

step "Three berth nodes, each registered in etcd under a ${TTL}s lease"
for n in 1 2 3; do start_node $n; done
for n in 1 2 3; do wait_node $n; done
show berth 1 node ls

step "An image on every node (Debian's busybox-static)"
TAR="$WORK/busybox.tar"
"$ROOT/deploy/busybox-rootfs.sh" "$TAR"
for n in 1 2 3; do berth $n import "$TAR" busybox:latest -c 'CMD ["sh"]' >/dev/null; done

step "An overlay network, made on node 1, present on every node (VXLAN, MTU 1450)"
show berth 1 network create -d overlay --attachable demo-overlay
for _ in $(seq 100); do berth 3 network inspect demo-overlay >/dev/null 2>&1 && break; sleep 0.2; done
show berth 3 network ls

step "A web server on node 1, a client on node 3 fetching it by name"
show berth 1 run -d --name web --network demo-overlay busybox:latest sh -c \
  'mkdir -p /www && echo "hello from $(hostname) on node1" > /www/index.html && exec httpd -f -p 80 -h /www'
show berth 2 run -d --name mid --network demo-overlay busybox:latest sleep 3600
show berth 3 run -d --name client --network demo-overlay busybox:latest sleep 3600
fetch() { berth 3 exec client sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 web 80" | tail -1; }
for _ in $(seq 50); do out=$(fetch 2>/dev/null) && [ -n "$out" ] && break; sleep 0.2; done
echo "\$ berth -H node3 exec client sh -c 'printf \"GET / ...\" | nc web 80'"
echo "$out"
[ "${out#hello from}" != "$out" ] || { echo "the client could not fetch the web server by name"; exit 1; }
VX=vx-$(berth 1 network inspect -f '{{.Id}}' demo-overlay | cut -c1-12)
MID=$(berth 2 inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' mid)
# Whether node 1 has forwarding entries for mid (read first: under pipefail, grep -q ending
# a pipe early would make the pipe fail).
node1_knows_mid() { local t; t=$(ip -n "$TAG-n1" neigh show dev "$VX" nud permanent); grep -q "^$MID " <<<"$t"; }
echo "node1's neighbour entries on $VX (endpoints of the other nodes):"
ip -n "$TAG-n1" neigh show dev "$VX" nud permanent

step "Node 2 killed: its lease expires within ${TTL}s and the survivors release its endpoint ($MID)"
kill_node 2
released=""
for _ in $(seq $((TTL * 20))); do
  if ! node1_knows_mid; then released=1; break; fi
  sleep 0.25
done
[ -n "$released" ] || { echo "node 2's endpoint was not released"; exit 1; }
show berth 1 node ls
echo "node1's neighbour entries on $VX now:"
ip -n "$TAG-n1" neigh show dev "$VX" nud permanent

step "Node 2 back: its container still runs under conmon, its endpoint is published again"
start_node 2
wait_node 2
for _ in $(seq 150); do node1_knows_mid && break; sleep 0.2; done
node1_knows_mid || { echo "node 2's endpoint was not published again"; exit 1; }
show berth 2 ps
show berth 1 node ls
echo "node1's neighbour entries on $VX again:"
ip -n "$TAG-n1" neigh show dev "$VX" nud permanent

step "Done: etcd + three nodes, an overlay across them, a fetch by name from node 3 to node 1,"
echo "node 2 killed and released within its lease, then back and reconciled."
