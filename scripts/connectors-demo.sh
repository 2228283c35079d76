#!/usr/bin/env bash
# The connectors demo (docs/connectors.md): sensor readings published to an
# MQTT broker go through an mqtt-source whose filter drops implausible
# readings before sending, into the `readings` topic, then through an
# sql-sink whose map (run on the server) turns each into Fluvio's SQL
# model, into a PostgreSQL table. Ends with the psql query that shows it.
#
# Installs what the machine lacks (PostgreSQL, Mosquitto; see
# scripts/install-services.sh) and starts throwaway instances of both, and
# a local cluster, on free loopback ports; everything is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-services.sh
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo build --release -p fluvio-server -p fluvio-cli -p fluvio-connector
cargo build --release --target wasm32-unknown-unknown -p reading-filter -p reading-to-sql
export PATH="$PWD/target/release:$PATH"
modules="$PWD/target/wasm32-unknown-unknown/release"

work=$(mktemp -d)
chmod 755 "$work"
export FLUVIO_HOME="$work/fluvio"
pg_bin=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as_postgres=()
if [ "$(id -u)" = 0 ]; then
  as_postgres=(runuser -u postgres --)
fi
cleanup() {
  fluvio cluster stop >/dev/null 2>&1 || true
  [ -n "${mosquitto_pid:-}" ] && kill "$mosquitto_pid" 2>/dev/null || true
  [ -d "$work/pg" ] && "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

source scripts/demo-lib.sh

# A throwaway MQTT broker.
mqtt_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mqtt_port" > "$work/mosquitto.conf"
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$mosquitto_bin" -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
mosquitto_pid=$!

# A throwaway PostgreSQL server (initdb refuses to run as root).
pg_port=$(free_port)
mkdir "$work/pg" && chown "$( [ "$(id -u)" = 0 ] && echo postgres || id -un )" "$work/pg"
"${as_postgres[@]}" "$pg_bin/initdb" -A trust -U postgres -D "$work/pg" >/dev/null
"${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
  -o "-k /tmp -h 127.0.0.1 -p $pg_port" start >/dev/null
db="postgres://postgres@127.0.0.1:$pg_port/postgres"
psql_bin=$(command -v psql || echo "$pg_bin/psql")
"$psql_bin" -X -q -d "$db" -c "CREATE TABLE readings (sensor TEXT NOT NULL, celsius DOUBLE PRECISION NOT NULL)"

run fluvio cluster start --listen 127.0.0.1:0
run fluvio topic create readings
run fluvio smart-module create reading-filter --wasm-file "$modules/reading_filter.wasm"
run fluvio smart-module create reading-to-sql --wasm-file "$modules/reading_to_sql.wasm"

cat > "$work/mqtt-source.yaml" <<YAML
apiVersion: 0.1.0
meta:
  version: 0.1.0
  name: readings-in
  type: mqtt-source
  topic: readings
  producer: { linger: 50ms, batch-size: 64KiB }
mqtt:
  url: mqtt://127.0.0.1:$mqtt_port
  topics: [ "sensors/#" ]
  qos: 1
  topic-as-key: true
transforms:
  - uses: reading-filter       # drops implausible readings before sending
YAML
cat > "$work/sql-sink.yaml" <<'YAML'
apiVersion: 0.1.0
meta:
  version: 0.1.0
  name: readings-out
  type: sql-sink
  topic: readings
  consumer: { offset: { start: beginning } }
  secrets: [ { name: DATABASE_URL } ]
sql:
  url: ${{ secrets.DATABASE_URL }}
transforms:
  - uses: reading-to-sql       # runs on the server: each reading becomes an SQL model Insert
    with: { table: readings }
YAML
echo "DATABASE_URL=$db" > "$work/secrets.env"
echo; cat "$work/mqtt-source.yaml"; echo; cat "$work/sql-sink.yaml"; echo
run fluvio connector create --config "$work/mqtt-source.yaml"
run fluvio connector create --config "$work/sql-sink.yaml" --secrets "$work/secrets.env"

# The source must be subscribed before the first reading is published.
for _ in $(seq 1 300); do
  fluvio connector logs readings-in 2>/dev/null | grep -q subscribed && break
  sleep 0.1
done
run fluvio connector list

echo "\$ mosquitto_pub ... (8 readings, 2 of them implausible)"
publish() { mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t "sensors/$1" -m "{\"sensor\": \"$1\", \"celsius\": $2}"; }
publish greenhouse-1 21.5
publish greenhouse-2 19.0
publish freezer -18.25
publish greenhouse-1 999
publish attic 31.0
publish cellar 12.5
publish freezer -273.15
publish greenhouse-2 19.5

for _ in $(seq 1 300); do
  rows=$("$psql_bin" -X -q -A -t -d "$db" -c "SELECT count(*) FROM readings")
  [ "$rows" -ge 6 ] && break
  sleep 0.1
done
echo
run "$psql_bin" -X -d "$db" -c "SELECT sensor, celsius FROM readings ORDER BY sensor, celsius"
rows=$("$psql_bin" -X -q -A -t -d "$db" -c "SELECT count(*) FROM readings")
if [ "$rows" != 6 ]; then
  echo "expected the 6 plausible readings in the table, found $rows" >&2
  fluvio connector logs readings-in >&2 || true
  fluvio connector logs readings-out >&2 || true
  exit 1
fi
echo "the 6 plausible readings are in PostgreSQL; the 2 implausible ones were dropped by the source"
