# Helpers the demo scripts share; sourced, not run.

# A loopback port nothing listens on (bash's /dev/tcp: no other tool needed).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
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
