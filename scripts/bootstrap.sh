#!/usr/bin/env bash
# Prepare this checkout on a fresh Debian or Raspberry Pi OS machine: the apt
# packages the appliance builds against, and a virtualenv in .venv with the
# package installed editable.  Safe to run again; it only does what is missing.
#
#   scripts/bootstrap.sh          runtime only
#   scripts/bootstrap.sh test     runtime plus what the tests need
set -euo pipefail

cd "$(dirname "$0")/.."
mode="${1:-runtime}"
python="${PYTHON:-python3}"

say() { printf 'bootstrap: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v "$python" >/dev/null 2>&1; then
    say "no $python on PATH; install Python 3.11 or newer (apt-get install python3)"
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "$("$python" --version) is too old; the appliance needs Python 3.11 or newer"
    exit 1
fi

# PyAudio has no Linux wheels: it compiles against PortAudio's headers.
packages=(gcc portaudio19-dev espeak-ng)
if [ "$mode" = test ]; then
    # real-time audio rig for the tests: a private PulseAudio behind ALSA's pulse plugin
    packages+=(alsa-utils libasound2-plugins pulseaudio pulseaudio-utils)
    # the systemd unit is checked with systemd-analyze, the scripts with shellcheck
    packages+=(systemd shellcheck)
fi
# The venv module and Python's headers come from Debian's packages unless this
# Python already has them (pyenv and the like do).
"$python" -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
"$python" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || packages+=(python3-dev)

if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for pkg in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
else
    say "not a Debian system: make sure PortAudio's headers and espeak-ng are installed"
fi

if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$python" -m venv .venv
fi

# Reinstall only when the project's requirements changed.
extras=""
[ "$mode" = test ] && extras="[test]"
stamp=".venv/.appliance-${mode}.stamp"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing the appliance package${extras:+ with test extras} into .venv"
    log=.venv/pip-install.log
    if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip &&
           .venv/bin/python -m pip install --disable-pip-version-check -e ".${extras}"; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        say "pip failed; the whole log is in $log"
        exit 1
    fi
    echo "$want" >"$stamp"
fi
