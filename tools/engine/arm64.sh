#!/usr/bin/env bash
# Let this x86-64 machine build and run linux/arm64 images under emulation: install Debian's
# qemu-user-static and register its aarch64 handler with the kernel's binfmt_misc, so that
# BuildKit's RUN steps (and `docker run --platform linux/arm64`) exec aarch64 binaries
# through qemu. Slow (every instruction is translated), but enough for small images.
#
#   sudo tools/engine/arm64.sh       # idempotent; run by tools/bootstrap.sh --arm64 / --test-images
#
# * qemu-user-static comes from the machine's own suites (Debian 12: 7.2). Its handler
#   description, /usr/lib/binfmt.d/qemu-aarch64.conf, is what systemd-binfmt would load at
#   boot; without systemd (containers, CI machines) this script writes it to
#   /proc/sys/fs/binfmt_misc/register itself.
# * The handler must carry the F flag ("fix binary": the kernel opens the interpreter once, at
#   registration), so that it works inside containers and chroots, where /usr/libexec/qemu-binfmt
#   does not exist. Debian's carries OPF; a handler registered without F is replaced.
# * binfmt_misc is mounted if it is not (mount -t binfmt_misc).
# * On an aarch64 machine there is nothing to do.
#
# Environment:
#   APT_UPDATE=1   refresh the machine's package lists first
set -euo pipefail

BINFMT=/proc/sys/fs/binfmt_misc
CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
ENTRY=$BINFMT/qemu-aarch64

log() { printf '[engine/arm64] %s\n' "$*" >&2; }
die() { printf '[engine/arm64] ERROR: %s\n' "$*" >&2; exit 1; }

if [ "$(uname -m)" = aarch64 ]; then
    log "this machine is aarch64: arm64 images build natively; nothing to do"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (apt-get, binfmt_misc)"

t0=$SECONDS
if ! dpkg-query -W -f='${Status}' qemu-user-static 2>/dev/null | grep -q 'install ok installed'; then
    command -v apt-get >/dev/null || die "apt-get not found: install qemu-user-static for aarch64 yourself"
    export DEBIAN_FRONTEND=noninteractive
    [ -n "${APT_UPDATE:-}" ] && apt-get -q update >/dev/null
    log "installing qemu-user-static"
    apt-get install -y -q --no-install-recommends qemu-user-static >/dev/null || {
        log "install failed; refreshing the machine's package lists and retrying once"
        apt-get -q update >/dev/null
        apt-get install -y -q --no-install-recommends qemu-user-static >/dev/null
    }
fi
[ -r "$CONF" ] || die "$CONF missing: this qemu-user-static does not describe its aarch64 handler"

if [ ! -e "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" \
        || die "cannot mount binfmt_misc on $BINFMT (a container without the privilege to mount it cannot emulate arm64)"
fi
if [ -e "$ENTRY" ] && ! grep -q '^flags:.*F' "$ENTRY"; then
    log "the registered qemu-aarch64 handler lacks the F flag (containers cannot reach it); replacing it"
    echo -1 >"$ENTRY"
fi
if [ ! -e "$ENTRY" ]; then
    # One line, :name:type:offset:magic:mask:interpreter:flags; the kernel decodes the \x escapes.
    grep -v '^#' "$CONF" | head -n1 >"$BINFMT/register" || die "the kernel refused $CONF's handler"
    log "registered the qemu-aarch64 handler from $CONF"
fi
grep -q '^enabled' "$ENTRY" || echo 1 >"$ENTRY"
grep -q '^enabled' "$BINFMT/status" || echo 1 >"$BINFMT/status"
log "arm64 emulation ready in $((SECONDS - t0))s: $(sed -n 's/^interpreter //p' "$ENTRY"), flags $(sed -n 's/^flags: //p' "$ENTRY")"
