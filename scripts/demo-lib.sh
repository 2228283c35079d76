# Helpers the demo scripts share; sourced, not run.

# A loopback port nothing listens on, from the 12,000 just below the
# kernel's ephemeral range (as dev-support's `free_port`): the kernel never
# hands those out to another `bind(0)` or outgoing connection in the moment
# between this check and the service binding it.
free_port() {
  local low port
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  if [ "$low" -le 13024 ]; then low=13024; fi
  while :; do
    port=$((low - 12000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# Waits up to 30 s until something listens on 127.0.0.1:PORT.
wait_for_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  exit 1
}

# Shows a command, then runs it.
run() { echo "\$ $*"; "$@"; }
