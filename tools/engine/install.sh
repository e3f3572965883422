#!/usr/bin/env bash
# Install a Docker engine + buildx (>= 0.17) + compose on a fresh Debian 12/13 machine.
#
#   sudo tools/engine/install.sh            # idempotent; prints versions at the end
#
# Debian 12's own docker.io (20.10) has no buildx, so the engine packages are
# downloaded from newer suites (docker.io 28 + tini-static and docker-buildx from
# sid, docker-compose from trixie) through a SEPARATE apt sources file and state dir:
# the machine's own apt configuration is never changed. The sources file
# points at the same mirror URI the machine's apt sources already use (read at
# run time; no registry host name is written into this repository).
# apt then installs the downloaded .deb files and resolves their dependencies
# (containerd, runc, iptables, ...) from the machine's own suites.
#
# Why Docker 28 (sid) and not trixie's 26.1: the BuildKit built into dockerd 26
# cannot run Dockerfile build checks (`bake --call check` answers "unsupported
# request frontend.lint" and would fetch docker/dockerfile:1.8 from Docker Hub);
# dockerd 28.5 runs them itself. Checked on Debian 12: sid's dockerd and
# containerd need only glibc >= 2.34, and dockerd 28.5 runs with bookworm's
# containerd 1.6.20 and runc 1.1.5 (sid's runc needs glibc 2.38, so it is not
# used). Its docker-init comes from sid's tini-static, which replaces tini.
#
# It also installs debootstrap (for tools/engine/base-image.sh) and Debian's
# docker-registry package (for push tests; its service is stopped, disabled
# and masked, tests start it themselves on 127.0.0.1).
#
# Environment:
#   ENGINE_CACHE_DIR   where the .deb files and apt lists go (default /var/cache/comfyimg-engine)
#   MIRROR_URI         override the mirror URI instead of parsing apt's sources
#   MIN_BUILDX         minimum buildx version (default 0.17.0)
#   MIN_DOCKERD        minimum dockerd version (default 28.0.0: build checks)
set -euo pipefail

CACHE_DIR=${ENGINE_CACHE_DIR:-/var/cache/comfyimg-engine}
MIN_BUILDX=${MIN_BUILDX:-0.17.0}
MIN_DOCKERD=${MIN_DOCKERD:-28.0.0}
ENGINE_SUITE=sid       # docker.io 28.5.x, tini-static (its docker-init)
COMPOSE_SUITE=trixie   # docker-compose 2.26.x
BUILDX_SUITE=sid       # docker-buildx 0.29.x

log() { printf '[engine/install] %s\n' "$*" >&2; }
die() { printf '[engine/install] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian"

export DEBIAN_FRONTEND=noninteractive

# Mirror URI: read from the machine's apt sources (see _mirror.sh).
# shellcheck source=tools/engine/_mirror.sh
. "$(dirname "$(readlink -f "$0")")/_mirror.sh"

version_ge() { # version_ge A B  -> true if A >= B
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

buildx_version() {
    docker buildx version 2>/dev/null | awk '{ v = $2; sub(/^v/, "", v); sub(/[+-].*/, "", v); print v; exit }'
}

dockerd_version() {
    dockerd --version 2>/dev/null | awk '{ v = $3; sub(/,$/, "", v); sub(/[+~-].*/, "", v); print v; exit }'
}

engine_ok() {
    command -v dockerd >/dev/null 2>&1 || return 1
    dpkg-query -W -f='${Status}' docker.io 2>/dev/null | grep -q 'install ok installed' || return 1
    local v d
    d=$(dockerd_version)
    [ -n "$d" ] && version_ge "$d" "$MIN_DOCKERD" || return 1
    v=$(buildx_version)
    [ -n "$v" ] && version_ge "$v" "$MIN_BUILDX"
}

extras_ok() {
    command -v debootstrap >/dev/null 2>&1 || return 1
    dpkg-query -W -f='${Status}' docker-registry 2>/dev/null | grep -q 'install ok installed'
}

# Keep services from starting during installation: the engine is started by
# tools/engine/start.sh (with --bridge=none) and the registry by the tests.
POLICY=/usr/sbin/policy-rc.d
policy_added=0
block_services() {
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod 0755 "$POLICY"
        policy_added=1
    fi
}
unblock_services() { if [ "$policy_added" = 1 ]; then rm -f "$POLICY"; fi; }
trap unblock_services EXIT

have_systemd() { [ -d /run/systemd/system ]; }

if engine_ok && extras_ok; then
    log "dockerd >= $MIN_DOCKERD, buildx >= $MIN_BUILDX, docker-registry and debootstrap already installed; nothing to do"
else
    block_services

    if ! engine_ok; then
        MIRROR=$(debian_mirror_uri) || die "could not find a Debian mirror URI in /etc/apt/sources.list(.d); set MIRROR_URI"
        log "mirror: $MIRROR"
        mkdir -p "$CACHE_DIR/debs" "$CACHE_DIR/lists/partial"
        SRC="$CACHE_DIR/engine.sources"
        SUITES=$(printf '%s\n' "$ENGINE_SUITE" "$COMPOSE_SUITE" "$BUILDX_SUITE" | sort -u | tr '\n' ' ')
        cat >"$SRC" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITES
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        # deb822 needs a *.sources name for SourceList to parse it as deb822.
        APT_OPTS=(
            -oDir::Etc::SourceList="$SRC"
            -oDir::Etc::SourceParts=/dev/null
            -oDir::State::Lists="$CACHE_DIR/lists"
            -oDir::Cache::pkgcache=""
            -oDir::Cache::srcpkgcache=""
            -oAPT::Get::List-Cleanup=0
            -oAcquire::Languages=none
            # sid's Release file carries a Valid-Until a few days ahead; a mirror that serves an
            # older snapshot of it fails `apt-get update` as "expired". The signature is still
            # checked, and only the named packages are taken from these lists.
            -oAcquire::Check-Valid-Until=false
        )
        log "apt-get update (private lists for ${SUITES% })"
        apt-get -q "${APT_OPTS[@]}" update >/dev/null

        (
            cd "$CACHE_DIR/debs"
            rm -f docker.io_*.deb tini-static_*.deb docker-buildx_*.deb docker-compose_*.deb
            log "apt-get download docker.io/$ENGINE_SUITE tini-static/$ENGINE_SUITE" \
                "docker-compose/$COMPOSE_SUITE docker-buildx/$BUILDX_SUITE"
            apt-get -q "${APT_OPTS[@]}" download "docker.io/$ENGINE_SUITE" "tini-static/$ENGINE_SUITE" \
                "docker-compose/$COMPOSE_SUITE" "docker-buildx/$BUILDX_SUITE"
        )
        ls "$CACHE_DIR"/debs/docker.io_*.deb "$CACHE_DIR"/debs/tini-static_*.deb \
            "$CACHE_DIR"/debs/docker-buildx_*.deb "$CACHE_DIR"/debs/docker-compose_*.deb >/dev/null

        # The machine's own package lists are needed to resolve the dependencies.
        if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ] \
           || [ -n "${APT_UPDATE:-}" ]; then
            log "apt-get update (machine's own sources)"
            apt-get -q update >/dev/null
        fi
        log "installing engine packages"
        (
            cd "$CACHE_DIR/debs"
            apt-get install -y -q --no-install-recommends \
                ./docker.io_*.deb ./tini-static_*.deb ./docker-buildx_*.deb ./docker-compose_*.deb
        ) || {
            log "install failed; refreshing the machine's package lists and retrying once"
            apt-get -q update >/dev/null
            (cd "$CACHE_DIR/debs" && apt-get install -y -q --no-install-recommends \
                ./docker.io_*.deb ./tini-static_*.deb ./docker-buildx_*.deb ./docker-compose_*.deb)
        }
    fi

    if ! extras_ok; then
        log "installing debootstrap and docker-registry"
        apt-get install -y -q --no-install-recommends debootstrap docker-registry || {
            apt-get -q update >/dev/null
            apt-get install -y -q --no-install-recommends debootstrap docker-registry
        }
    fi
fi

# The packaged services must not run on their own: dockerd would create the
# docker0 bridge (forbidden here) and docker-registry would hold port 5000.
if command -v systemctl >/dev/null 2>&1; then
    for unit in docker.service docker.socket docker-registry.service; do
        if have_systemd; then systemctl disable --now "$unit" >/dev/null 2>&1 || true
        else systemctl disable "$unit" >/dev/null 2>&1 || true; fi
        systemctl mask "$unit" >/dev/null 2>&1 || true
    done
fi
for svc in docker docker-registry; do
    if [ -x "/etc/init.d/$svc" ]; then
        update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
done
# A registry started by the package (sysvinit machines without policy-rc.d)
# would hold :5000; stop it if it is ours to stop (started from the packaged config).
if pgrep -x docker-registry >/dev/null 2>&1; then
    log "stopping the packaged docker-registry service"
    if have_systemd; then systemctl stop docker-registry >/dev/null 2>&1 || true; fi
    [ -x /etc/init.d/docker-registry ] && /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
fi

v=$(buildx_version)
[ -n "$v" ] && version_ge "$v" "$MIN_BUILDX" || die "docker buildx ${v:-missing} < $MIN_BUILDX"
d=$(dockerd_version)
[ -n "$d" ] && version_ge "$d" "$MIN_DOCKERD" || die "dockerd ${d:-missing} < $MIN_DOCKERD"

log "versions:"
printf '  dockerd:         %s\n' "$(dockerd --version)"
printf '  docker client:   %s (%s)\n' "$(docker --version)" "$(command -v docker)"
printf '  buildx:          %s\n' "$(docker buildx version)"
printf '  compose:         %s\n' "$(docker compose version 2>/dev/null || docker-compose version 2>/dev/null | head -n1)"
printf '  containerd:      %s\n' "$(containerd --version 2>/dev/null || echo missing)"
printf '  docker-registry: %s\n' "$(dpkg-query -W -f='${Version}' docker-registry)"
printf '  debootstrap:     %s\n' "$(dpkg-query -W -f='${Version}' debootstrap)"
