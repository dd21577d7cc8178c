#!/usr/bin/env bash
# Install the Debian packages named on the command line that are not installed yet:
#     tools/apt-install.sh dcmtk dicom3tools orthanc orthanc-dicomweb
# as root, or through sudo; otherwise it fails with the apt-get line a person can run. Used by the
# Makefile (chromium, DICOM peers, PostgreSQL, Redis) and by .ci/run, so both install the same way.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 PACKAGE..." >&2
    exit 2
fi

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    echo "error: not a Debian system (no dpkg/apt-get): install these yourself: $*" >&2
    exit 1
fi

missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo ">> Debian packages present: $*"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null; then
    as_root() { sudo "$@"; }
else
    echo "error: Debian packages missing and neither root nor sudo can install them: apt-get install ${missing[*]}" >&2
    exit 1
fi

echo ">> installing Debian packages: ${missing[*]}"
policy=/usr/sbin/policy-rc.d
created_policy=0
restore_policy() {
    if [ "$created_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
}
trap restore_policy EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# policy-rc.d 101: packages must not start their services (orthanc, postgresql's default cluster,
# redis) during the install; the tests start what they need, on ports of their own.
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    created_policy=1
fi
# The lock timeout: another apt (unattended upgrades, a parallel install) may hold the lock.
as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
if ! as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}"; then
    echo "error: could not install ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
    exit 1
fi
