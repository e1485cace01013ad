#!/usr/bin/env bash
# Install the Debian packages that are missing, with apt-get, when run as root; otherwise say
# what to install and fail. Used by the Makefile (system-deps, container-deps).
#
#   scripts/debian-packages.sh "PURPOSE" PACKAGE...
set -euo pipefail

purpose="$1"
shift
missing=()
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2> /dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
    echo "Installing ${missing[*]} (apt-get) $purpose"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" > /dev/null
else
    echo "Keel needs the Debian packages ${missing[*]} $purpose." >&2
    echo "  As root: apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
