#!/usr/bin/env bash
# Installs the real services the connector tests and the demo talk to, when
# the machine lacks them: a PostgreSQL server, the Mosquitto MQTT broker and
# its clients, nats-server, openssl (the TLS tests make their certificates
# with it), Prometheus (the metrics tests scrape the server with it), and
# Chromium with its WebDriver (the console test drives it). Uses the system's package manager (apt); each test
# then starts its own throwaway instances on loopback ports.
set -euo pipefail

missing=()
have_postgres() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_postgres || missing+=(postgresql)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
# The TLS tests make their throwaway certificates with it.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The metrics tests: a real Prometheus scrapes the server, and its promtool
# checks the exposition.
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The console test: a real headless browser, driven over WebDriver.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing ${missing[*]}"
sudo=()
if [ "$(id -u)" != 0 ]; then
  sudo=(sudo)
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install ${missing[*]}: no apt-get on this machine; install them and run again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
# Without recommends: Prometheus's would add a node exporter service.
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
# The packages start system-wide instances; the tests start their own.
for service in mosquitto postgresql prometheus; do
  "${sudo[@]}" service "$service" stop >/dev/null 2>&1 || true
done
