#!/bin/sh
# comfy-entrypoint: run the container's command as the unprivileged "comfy" user.
#
# Contract (see docs/user-guides/images.md):
#   * Started as root (the image default): the command runs as PUID:PGID
#     (defaults: the image's comfy user, 1000:1000). IDs must be plain decimal
#     integers in 1..2147483647 without leading zeros ("abc", "-1", "1e3",
#     "007", "" are rejected). 0 (root) is refused unless COMFY_ALLOW_ROOT=1.
#     Only the top level of each data directory (and $HOME) is chowned, never
#     recursively, and only when it is owned by root or by the image's comfy
#     user (i.e. created by the image or by `docker run -v` for a missing
#     host path). Foreign-owned mounts are left alone, with a warning if the
#     target user cannot write them.
#   * Started as any other user (`docker run --user 12345[:gid]`): nothing is
#     remapped (PUID/PGID are ignored with a warning if they disagree); the
#     data dirs are group-0 writable, so an arbitrary UID in group 0 (Docker's
#     default for --user UID) can write them.
#   * Bad input: a message on stderr and exit status 64 (EX_USAGE), before
#     anything is changed.
set -eu

COMFY_USER=comfy
COMFY_HOME=${COMFY_HOME:-/home/comfy}
COMFY_DIR=${COMFY_DIR:-/app/ComfyUI}
COMFY_DATA_DIRS=${COMFY_DATA_DIRS:-"$COMFY_DIR/models $COMFY_DIR/output $COMFY_DIR/input $COMFY_DIR/user $COMFY_DIR/custom_nodes $COMFY_DIR/temp"}

err() { printf 'comfy-entrypoint: error: %s\n' "$*" >&2; }
warn() { printf 'comfy-entrypoint: warning: %s\n' "$*" >&2; }

# The image's comfy IDs, from /etc/passwd (fallback 1000).
image_uid=$(awk -F: -v u="$COMFY_USER" '$1 == u { print $3 }' /etc/passwd 2>/dev/null || true)
image_gid=$(awk -F: -v u="$COMFY_USER" '$1 == u { print $4 }' /etc/passwd 2>/dev/null || true)
image_uid=${image_uid:-1000}
image_gid=${image_gid:-1000}

# validate_id NAME VALUE: exit 64 unless VALUE is a decimal integer in range.
validate_id() {
    name=$1 value=$2
    case $value in
        '' ) err "$name is empty; expected a decimal integer in 1..2147483647"; exit 64 ;;
        *[!0-9]* ) err "$name='$value' is not a decimal integer (expected 1..2147483647)"; exit 64 ;;
        0?* ) err "$name='$value' has leading zeros; write it as a plain decimal integer"; exit 64 ;;
    esac
    # At most 10 digits, then a numeric range check that cannot overflow.
    if [ "${#value}" -gt 10 ] || [ "$value" -gt 2147483647 ]; then
        err "$name='$value' is out of range (expected 1..2147483647)"; exit 64
    fi
    if [ "$value" -eq 0 ] && [ "${COMFY_ALLOW_ROOT:-0}" != 1 ]; then
        err "$name=0 would run ComfyUI as root; set COMFY_ALLOW_ROOT=1 if you really mean it"; exit 64
    fi
}

# Validate whatever was given, even if it will be ignored: a typo should fail loudly.
if [ "${PUID+set}" = set ]; then validate_id PUID "$PUID"; fi
if [ "${PGID+set}" = set ]; then validate_id PGID "$PGID"; fi

if [ $# -eq 0 ]; then
    set -- python main.py --listen 0.0.0.0
fi

cur_uid=$(id -u)
cur_gid=$(id -g)

if [ "$cur_uid" -ne 0 ]; then
    # Arbitrary UID (docker run --user ...): no privileges to remap anything.
    if [ "${PUID:-$cur_uid}" != "$cur_uid" ] || [ "${PGID:-$cur_gid}" != "$cur_gid" ]; then
        warn "running as $cur_uid:$cur_gid (docker --user); PUID/PGID are ignored"
    fi
    unwritable=
    for d in $COMFY_DATA_DIRS; do
        if [ -d "$d" ] && [ ! -w "$d" ]; then unwritable="$unwritable $d"; fi
    done
    if [ -n "$unwritable" ]; then
        warn "not writable by $cur_uid:$cur_gid:$unwritable (the image's data dirs are group-0 writable: use --user UID:0 or --group-add 0)"
    fi
    if [ ! -w "${HOME:-/}" ]; then
        if [ -w "$COMFY_HOME" ]; then HOME=$COMFY_HOME; else HOME=$(mktemp -d /tmp/comfy-home.XXXXXX); fi
        export HOME
    fi
    exec "$@"
fi

uid=${PUID:-$image_uid}
gid=${PGID:-$image_gid}

# Non-recursive ownership fix-up of what the target user must write.
fix_owner() {
    d=$1
    [ -d "$d" ] || mkdir -p "$d"
    owner=$(stat -c %u "$d")
    if [ "$owner" != "$uid" ] && { [ "$owner" = 0 ] || [ "$owner" = "$image_uid" ]; }; then
        chown "$uid:$gid" "$d"
    elif [ "$owner" != "$uid" ]; then
        # Foreign-owned (a host mount): not ours to change.
        if ! setpriv --reuid="$uid" --regid="$gid" --clear-groups test -w "$d" 2>/dev/null; then
            warn "$d is owned by uid $owner and not writable by $uid:$gid; fix it on the host"
        fi
    fi
}

if [ "$uid" != 0 ]; then
    for d in $COMFY_DATA_DIRS; do fix_owner "$d"; done
    fix_owner "$COMFY_HOME"
fi

# Keep the supplementary groups Docker gave the container (`--group-add video`, for
# GPU/render devices), but never root's group 0 that a root start carries.
extra=$(id -G | tr ' ' '\n' | grep -vx -e 0 -e "$gid" | paste -sd, - || true)
if [ -n "$extra" ]; then groups="--groups=$extra"; else groups=--clear-groups; fi

export HOME="$COMFY_HOME" USER="$COMFY_USER" LOGNAME="$COMFY_USER"
exec setpriv --reuid="$uid" --regid="$gid" "$groups" -- "$@"
