#!/usr/bin/env bash
# Install Debian/Ubuntu packages, but only the ones whose command is missing.
#
#   scripts/ensure-apt.sh [COMMAND=]PACKAGE ...   install PACKAGE when COMMAND is not on PATH
#                                                 (COMMAND defaults to PACKAGE)
#   scripts/ensure-apt.sh --always PACKAGE ...    install PACKAGE unconditionally
#                                                 (for libraries with no command, e.g. python3-venv)
#
# Runs apt-get as root directly, else through sudo; fails with a clear message when
# neither is possible. `apt-get update` runs once per call, and only if something is
# actually missing. Idempotent: with everything present it does nothing and prints nothing.
set -euo pipefail

die() { printf 'ensure-apt: %s\n' "$*" >&2; exit 1; }

always=0
missing=()
for spec in "$@"; do
    if [[ "$spec" == --always ]]; then always=1; continue; fi
    cmd="${spec%%=*}"
    pkg="${spec#*=}"
    if (( always )) || ! command -v "$cmd" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
(( ${#missing[@]} )) || exit 0

command -v apt-get >/dev/null 2>&1 \
    || die "need ${missing[*]} but apt-get is not available; install them by hand"

if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
elif command -v sudo >/dev/null 2>&1 && [[ -t 0 ]]; then
    as_root=(sudo)          # interactive: let sudo ask for the password
else
    die "need to apt-get install ${missing[*]}, but this is not root and sudo is unavailable" \
        "(or needs a password with no terminal). Install them by hand, or re-run as root."
fi

apt_get() {
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -o DPkg::Lock::Timeout=300 "$@"
}

echo "ensure-apt: installing ${missing[*]}" >&2
apt_get update -qq >/dev/null
apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
