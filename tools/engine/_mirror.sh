# shellcheck shell=bash
# Sourced by tools/engine/*.sh. Prints the Debian archive mirror URI that the
# machine's apt sources already use (deb822 *.sources or one-line *.list /
# sources.list), so that no registry host name is written into this repository.
# MIRROR_URI in the environment overrides it.
debian_mirror_uri() {
    if [ -n "${MIRROR_URI:-}" ]; then printf '%s\n' "${MIRROR_URI%/}"; return 0; fi
    local f uri
    local -a files=()
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    for f in "${files[@]}"; do
        case "$f" in
            *.sources)
                # deb822 stanzas: Types must include "deb"; take a URI ending in /debian
                # (this skips debian-security and third-party repositories).
                uri=$(awk '
                    function flush() { if (deb && u != "") { print u; found = 1; exit } deb = 0; u = "" }
                    /^[[:space:]]*$/ { flush(); next }
                    /^[[:space:]]*#/ { next }
                    tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
                    tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { u = $i; break } }
                    END { if (!found && deb && u != "") print u }
                ' "$f" | head -n1)
                ;;
            *)
                # one-line format: deb [options] URI suite components...
                uri=$(awk '
                    $1 == "deb" {
                        i = 2
                        if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                        if ($i ~ /\/debian\/?$/) { print $i; exit }
                    }
                ' "$f" | head -n1)
                ;;
        esac
        if [ -n "$uri" ]; then printf '%s\n' "${uri%/}"; return 0; fi
    done
    return 1
}
