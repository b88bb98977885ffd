#!/usr/bin/env bash
# Starts a replicated pair of cache-nodes on this machine, repcached-style, checks that it
# formed (one master, one slave, the link up), and keeps it running until Ctrl-C or SIGTERM
# (both nodes are stopped then):
#   node A: clients 127.0.0.1:BASE_PORT,   replication 127.0.0.1:BASE_PORT+1 (starts first: master)
#   node B: clients 127.0.0.1:BASE_PORT+2, replication 127.0.0.1:BASE_PORT+3 (joins A: slave)
# BASE_PORT defaults to 11211 (memcached's port). Logs go to PAIR_DIR (default: a new temp dir).
# Exits non-zero, saying why, when a port is taken or the pair does not form.
set -euo pipefail
cd "$(dirname "$0")/.."

base="${BASE_PORT:-11211}"
a_client=$base a_repl=$((base + 1)) b_client=$((base + 2)) b_repl=$((base + 3))
dir="${PAIR_DIR:-$(mktemp -d -t cachepair.XXXXXX)}"
mkdir -p "$dir"

fail() { echo "local-pair: $*" >&2; exit 1; }

# A port that something already listens on would make a node fail, or worse, be reached by the
# other node instead of its peer.
for port in "$a_client" "$a_repl" "$b_client" "$b_repl"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        owner="$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(([^)]*' | head -1 | cut -d'(' -f3)"
        fail "127.0.0.1:$port is taken${owner:+ by $owner}; the pair needs ports $base-$((base + 3)):" \
            "stop what holds it, or choose others, e.g. BASE_PORT=21211 $0"
    fi
done

echo "building cache-node (release; the first build takes a few minutes)..."
cargo build --release -p cache-node
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
trap stop EXIT
trap 'exit 0' INT TERM

# One memcached request to a node; prints the reply up to END (empty when it does not answer).
ask() { # port request
    local reply line
    exec 3<>"/dev/tcp/127.0.0.1/$1" 2>/dev/null || return 0
    printf '%s\r\n' "$2" >&3
    reply=""
    while IFS= read -r -t 2 line <&3; do
        line="${line%$'\r'}"
        [ "$line" = END ] && break
        reply+="$line"$'\n'
    done
    exec 3<&-
    printf '%s' "$reply"
}
stat_of() { ask "$1" "stats replication" | sed -n "s/^STAT $2 //p"; }

commands=()
start() { # name client-port repl-port peer-repl-port
    local cmd=("$bin" -l 127.0.0.1 -p "$2" -X "$3" -x "127.0.0.1:$4" --repl-secret-file "$secret" "${user[@]}" -v)
    "${cmd[@]}" >"$dir/$1.log" 2>&1 &
    pids+=($!)
    commands+=("${cmd[*]}")
    for _ in $(seq 100); do   # up to 10 s for the client port
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/$1.log" >&2; fail "node $1 exited (log above)"; }
        sleep 0.1
    done
    fail "node $1 did not open 127.0.0.1:$2 within 10 s; its log: $dir/$1.log"
}
start a "$a_client" "$a_repl" "$b_repl"
start b "$b_client" "$b_repl" "$a_repl"

# The pair has formed when A is master, B its slave, and both see the link up.
formed=""
for _ in $(seq 100); do   # up to 10 s
    roles="$(stat_of "$a_client" role)/$(stat_of "$b_client" role)"
    links="$(stat_of "$a_client" link)/$(stat_of "$b_client" link)"
    if [ "$roles" = master/slave ] && [ "$links" = up/up ]; then formed=1; break; fi
    sleep 0.1
done
if [ -z "$formed" ]; then
    echo "local-pair: the pair did not form: roles A/B $roles, links $links (want master/slave, up/up)" >&2
    for n in a b; do
        echo "--- last lines of node ${n^^}'s log ($dir/$n.log):" >&2
        grep -iE "error|warn|refus|fail|denied" "$dir/$n.log" | tail -5 >&2 || tail -5 "$dir/$n.log" >&2
    done
    exit 1
fi

cat <<EOT
A replicated pair is running (Ctrl-C stops it):
  node A  pid ${pids[0]}  clients 127.0.0.1:$a_client  replication 127.0.0.1:$a_repl  master
    ${commands[0]}
  node B  pid ${pids[1]}  clients 127.0.0.1:$b_client  replication 127.0.0.1:$b_repl  slave, link up
    ${commands[1]}
Both take reads and writes; each write reaches the other. Try the seed's check:
  telnet 127.0.0.1 $a_client      set key 0 0 5 / hello    then    telnet 127.0.0.1 $b_client    get key
'stats replication' on either node shows its role, link and lag. Kill the master
(kill -9 ${pids[0]}) and the slave takes over within a second; start it again with its
command line above and it rejoins as slave.
Logs: $dir
EOT
wait
