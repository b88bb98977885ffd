#!/usr/bin/env bash
# Starts a replicated pair of cache-nodes on this machine, repcached-style, and keeps it
# running until Ctrl-C (both nodes are stopped then):
#   node A: clients 127.0.0.1:11211, replication 127.0.0.1:11212 (starts first: master)
#   node B: clients 127.0.0.1:11213, replication 127.0.0.1:11214 (joins A: slave)
# Ports can be moved with BASE_PORT (default 11211). Logs go to $PAIR_DIR (a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

base="${BASE_PORT:-11211}"
a_client=$base a_repl=$((base + 1)) b_client=$((base + 2)) b_repl=$((base + 3))
dir="${PAIR_DIR:-$(mktemp -d -t cachepair.XXXXXX)}"
mkdir -p "$dir"

cargo build --release -q -p cache-node
bin=target/release/cache-node

# Both nodes must share a secret; a fresh random one for this pair.
secret="$dir/repl-secret"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secret")
user=()
[ "$(id -u)" -eq 0 ] && user=(-u nobody)   # memcached's rule: never serve as root

pids=()
stop() {
    trap - EXIT INT TERM
    [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null && wait "${pids[@]}" 2>/dev/null
    echo "pair stopped; logs in $dir"
}
trap stop EXIT INT TERM

start() { # name client-port repl-port peer-repl-port
    "$bin" -l 127.0.0.1 -p "$2" -X "$3" -x "127.0.0.1:$4" --repl-secret-file "$secret" \
        "${user[@]}" -v >"$dir/$1.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do   # up to 10 s for the client port
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/$1.log"; exit 1; }
        sleep 0.1
    done
    echo "node $1 did not open 127.0.0.1:$2"; exit 1
}
start a "$a_client" "$a_repl" "$b_repl"
start b "$b_client" "$b_repl" "$a_repl"

cat <<EOT
A replicated pair is running (Ctrl-C stops it):
  node A  127.0.0.1:$a_client   (started first: master)
  node B  127.0.0.1:$b_client   (joined A: slave)
Both take reads and writes; each write reaches the other. Try the seed's check:
  telnet 127.0.0.1 $a_client      set key 0 0 5 / hello    then    telnet 127.0.0.1 $b_client    get key
'stats replication' on either node shows its role, link and lag. Kill the master and the
slave takes over within a second; restart it (same command line) and it rejoins as slave.
Logs: $dir
EOT
wait
