#!/usr/bin/env bash
# Start a Docker engine for builds and tests, if one is not already answering.
#
#   tools/engine/start.sh        # idempotent
#
# dockerd runs WITHOUT a bridge network (--bridge=none, no iptables/NAT):
# containers and build steps must use `--network none` or `--network host`.
#
# CDI is turned on (dockerd 26 needs {"features": {"cdi": true}}): a GPU host whose NVIDIA
# toolkit wrote a CDI spec (/etc/cdi, /var/run/cdi) then gives containers the GPU with
# --device nvidia.com/gpu=all, which `validate --gpus auto` picks. An existing daemon.json
# is left as it is (the log says whether it has CDI).
#
# Environment:
#   DOCKERD_CONFIG       daemon config (default /etc/docker/daemon.json), written only if absent
#   DOCKERD_LOG          log file (default /var/log/comfyimg-dockerd.log)
#   DOCKERD_WAIT_SECS    how long to wait for `docker info` (default 60)
#   DOCKERD_EXTRA_ARGS   extra dockerd arguments (word-split)
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/comfyimg-dockerd.log}
CONFIG=${DOCKERD_CONFIG:-/etc/docker/daemon.json}
WAIT=${DOCKERD_WAIT_SECS:-60}

log() { printf '[engine/start] %s\n' "$*" >&2; }
# A live dockerd (a killed one can linger as a zombie, which must not count). Read from
# /proc, not ps: procps is not a dependency of docker.io and minimal machines lack it.
dockerd_alive() {
    local stat
    for stat in /proc/[0-9]*/stat; do
        # "PID (comm) STATE ...": comm is dockerd, state anything but Z (zombie) or X (dead)
        read -r stat <"$stat" 2>/dev/null || continue
        case $stat in *" (dockerd) "[!ZX]*) return 0 ;; esac
    done
    return 1
}

# The config is written even when an engine already answers: it takes effect at the next start.
if [ ! -e "$CONFIG" ]; then
    if mkdir -p "$(dirname "$CONFIG")" 2>/dev/null && printf '{"features": {"cdi": true}}\n' 2>/dev/null >"$CONFIG"; then
        log "wrote $CONFIG (CDI on)"
    else
        log "note: cannot write $CONFIG (not root?); the engine starts without CDI"
    fi
elif ! grep -q '"cdi"' "$CONFIG"; then
    log "note: $CONFIG does not turn CDI on; GPUs offered only through CDI will not reach containers"
fi

if docker info >/dev/null 2>&1; then
    running=$(docker info --format '{{.ServerVersion}}')
    log "engine already answering: $running"
    # An engine started before tools/engine/install.sh upgraded dockerd keeps its old version
    # (and, before 28, cannot run build checks) until it is restarted.
    installed=$(dockerd --version 2>/dev/null | awk '{ v = $3; sub(/,$/, "", v); print v; exit }' || true)
    if [ -z "${DOCKER_HOST:-}" ] && [ -n "$installed" ] && [ "$installed" != "$running" ]; then
        log "note: the running engine is $running but the installed dockerd is $installed; stop the running" \
            "dockerd and run this script again to use it"
    fi
    exit 0
fi

command -v dockerd >/dev/null || { log "ERROR: dockerd not found; run tools/engine/install.sh first"; exit 1; }
[ "$(id -u)" = 0 ] || { log "ERROR: must run as root to start dockerd"; exit 1; }

if dockerd_alive; then
    log "dockerd is running but not answering yet; waiting"
else
    mkdir -p "$(dirname "$LOG")"
    # No live dockerd: a pid file left by a killed one (possibly still a zombie) would make
    # the new one refuse to start.
    rm -f /var/run/docker.pid
    # shellcheck disable=SC2086
    cfg=()
    [ -e "$CONFIG" ] && cfg=(--config-file "$CONFIG")
    setsid dockerd "${cfg[@]}" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        ${DOCKERD_EXTRA_ARGS:-} >"$LOG" 2>&1 </dev/null &
    log "started dockerd (pid $!), log: $LOG"
fi

deadline=$((SECONDS + WAIT))
until docker info >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        log "ERROR: docker info did not answer within ${WAIT}s; last lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
    if ! dockerd_alive; then
        log "ERROR: dockerd exited; last lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
log "engine ready: server $(docker info --format '{{.ServerVersion}}'), CDI spec dirs $(docker info --format '{{json .CDISpecDirs}}'), buildx $(docker buildx version | awk '{print $2}')"
