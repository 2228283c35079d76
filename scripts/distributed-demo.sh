#!/usr/bin/env bash
# The distributed demo (docs/distributed.md): three NATS nodes with
# JetStream and two stateless fluvio-servers in front of them, all on
# loopback. A topic with three copies is produced to through both servers;
# one NATS node is killed with SIGKILL, then one fluvio-server: the client,
# given both servers' addresses, moves on, and every record is still there,
# once, in order.
#
# Installs nats-server where the machine lacks it (scripts/install-services.sh);
# everything started here is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-services.sh
cargo build --release -p fluvio-server -p fluvio-cli
export PATH="$PWD/target/release:$PATH"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

source scripts/demo-lib.sh

# Three NATS nodes, each with its own JetStream store, joined by routes.
nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
client_ports=() route_ports=()
for node in 0 1 2; do client_ports+=("$(free_port)"); route_ports+=("$(free_port)"); done
routes=$(printf 'nats-route://127.0.0.1:%s, ' "${route_ports[@]}")
nats_pids=()
for node in 0 1 2; do
  cat > "$work/node$node.conf" <<EOF
server_name: node$node
listen: 127.0.0.1:${client_ports[$node]}
max_payload: 8MB
jetstream { store_dir: "$work/store$node" }
cluster { name: demo, listen: 127.0.0.1:${route_ports[$node]}, routes: [${routes%, }] }
EOF
  "$nats_bin" -c "$work/node$node.conf" > "$work/node$node.log" 2>&1 &
  nats_pids+=($!)
  pids+=($!)
  disown $!  # no "Killed" notice when the demo kills it
done
for port in "${client_ports[@]}"; do wait_for_port "$port"; done
urls=$(printf 'nats://127.0.0.1:%s,' "${client_ports[@]}")
urls=${urls%,}
echo "NATS cluster with JetStream: $urls"

# Two fluvio-servers on the cluster: no topic data of their own.
server_ports=()
server_pids=()
for name in a b; do
  port=$(free_port)
  fluvio-server --addr "127.0.0.1:$port" --data-dir "$work/server-$name" --jetstream "$urls" \
    > "$work/server-$name.out" 2> "$work/server-$name.log" &
  server_pids+=($!)
  pids+=($!)
  disown $!
  server_ports+=("$port")
done
for port in "${server_ports[@]}"; do wait_for_port "$port"; done
export FLUVIO_ADDR="127.0.0.1:${server_ports[0]},127.0.0.1:${server_ports[1]}"
echo "fluvio-servers: $FLUVIO_ADDR"

run fluvio topic create orders -r 3
seq 1 10000 | sed 's/^/order-/' > "$work/first.txt"
seq 10001 20000 | sed 's/^/order-/' > "$work/second.txt"
seq 20001 30000 | sed 's/^/order-/' > "$work/third.txt"
run fluvio produce orders --file "$work/first.txt"

echo "# kill -9 one NATS node: a majority of the three copies remains"
kill -9 "${nats_pids[1]}"
run fluvio produce orders --file "$work/second.txt"

echo "# kill -9 the first fluvio-server: the client moves to the second"
kill -9 "${server_pids[0]}"
run fluvio produce orders --file "$work/third.txt"

run fluvio topic list
fluvio consume orders -B -d > "$work/consumed.txt"
cat "$work/first.txt" "$work/second.txt" "$work/third.txt" > "$work/produced.txt"
if cmp -s "$work/produced.txt" "$work/consumed.txt"; then
  echo "all $(wc -l < "$work/consumed.txt") records are there, once each, in order"
else
  echo "records differ: produced $(wc -l < "$work/produced.txt"), consumed $(wc -l < "$work/consumed.txt")" >&2
  exit 1
fi
