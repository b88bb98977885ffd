#!/usr/bin/env bash
# Stop the control plane that up.sh started in <state-dir>: SIGTERM, then
# SIGKILL after a bounded wait. Safe to call twice, and on a state dir where
# nothing runs. Keeps the state dir (certificates, etcd data, logs).
#
# Usage: down.sh <state-dir>
#   CACHEPAIR_DOWN_TIMEOUT  seconds to wait after SIGTERM (default 10)
set -euo pipefail

if (($# != 1)); then
    echo "usage: $0 <state-dir>" >&2
    exit 2
fi
if [[ ! -d "$1" ]]; then
    echo "down.sh: $1 does not exist; nothing to stop" >&2
    exit 0
fi
state="$(cd "$1" && pwd)"
pid_dir="$state/pids"
grace="${CACHEPAIR_DOWN_TIMEOUT:-10}"

log() { printf 'down.sh: %s\n' "$*" >&2; }

# ours <pid>: the process is alive and was started by up.sh for this state dir
# (every component's command line names a file in it), so a PID reused by
# some other process is never signalled.
ours() {
    local pid="$1"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$state/"
}

# stop <name>
stop() {
    local name="$1" f pid deadline
    f="$pid_dir/$name.pid"
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f")"
    if ! ours "$pid"; then
        rm -f "$f"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while ours "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if ours "$pid"; then
        log "$name (pid $pid) still running after ${grace}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while ours "$pid" && ((SECONDS < deadline)); do
            sleep 0.2
        done
        ours "$pid" && { log "$name (pid $pid) survived SIGKILL"; return 1; }
    fi
    rm -f "$f"
    log "stopped $name (pid $pid)"
}

rc=0
core=" kube-scheduler kube-controller-manager kube-apiserver etcd "
# First anything else a later tool recorded in pids/ (e.g. a process kubelet),
# then the control plane, clients before servers.
for f in "$pid_dir"/*.pid; do
    [[ -e "$f" ]] || continue
    name="$(basename "$f" .pid)"
    [[ "$core" == *" $name "* ]] || stop "$name" || rc=1
done
for name in $core; do
    stop "$name" || rc=1
done
exit "$rc"
