#!/usr/bin/env bash
# Prepare this checkout on a fresh Debian or Raspberry Pi OS machine: the apt
# packages the appliance builds against, and a virtualenv in .venv with the
# package installed editable.  Safe to run again; it only does what is missing.
#
#   scripts/bootstrap.sh                      runtime only
#   scripts/bootstrap.sh test                 runtime plus what the tests need
#   scripts/bootstrap.sh test --packages-only the apt packages only (the part that needs
#                                             root; .ci/run does it before the suite runs
#                                             as a normal user)
#
# One line per step goes to stderr; on a terminal apt and pip also show their own
# progress, through a pipe they stay quiet (pip's output goes to .venv/pip-install.log).
set -euo pipefail

cd "$(dirname "$0")/.."
mode="${1:-runtime}"
packages_only=0
case "${2:-}" in
    "") ;;
    --packages-only) packages_only=1 ;;
    *) printf 'bootstrap: unknown option %s; use: scripts/bootstrap.sh [runtime|test] [--packages-only]\n' "$2" >&2; exit 2 ;;
esac
case "$mode" in
    runtime|test) ;;
    *) printf 'bootstrap: unknown mode %s; use runtime or test\n' "$mode" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"
terminal=0
[ -t 1 ] && terminal=1

say() { printf 'bootstrap: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "this step needs root and there is no sudo: run as root: $*"
        exit 1
    fi
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
    # the systemd unit is checked with systemd-analyze (its ExecReload= runs procps' kill), the
    # scripts with shellcheck
    packages+=(systemd procps shellcheck)
fi
# The venv module and Python's headers come from Debian's packages unless this
# Python already has them (pyenv and the like do).
"$python" -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
"$python" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || packages+=(python3-dev)

# The pulseaudio package switches on a PulseAudio for every user who logs in (systemd
# user units, enabled globally).  The tests start private ones of their own, and on the
# appliance's machine a login's PulseAudio would take the sound card from the service:
# switch that off again.
PULSE_UNITS=(pulseaudio.socket pulseaudio.service)

pulse_units_enabled() {
    local unit
    command -v systemctl >/dev/null 2>&1 || return 0
    for unit in "${PULSE_UNITS[@]}"; do
        if systemctl --global --quiet is-enabled "$unit" 2>/dev/null; then
            printf '%s\n' "$unit"
        fi
    done
}

keep_pulseaudio_private() {
    local why=$1 enabled
    mapfile -t enabled < <(pulse_units_enabled)
    [ "${#enabled[@]}" -gt 0 ] || return 0
    say "switching off the per-user PulseAudio (${enabled[*]}, for every login): $why"
    as_root systemctl --global --quiet disable "${enabled[@]}"
    say "  (sudo systemctl --global enable ${enabled[*]} turns it back on)"
}

if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for pkg in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing with apt: ${missing[*]}"
        say "apt-get update"
        if [ "$terminal" = 1 ]; then
            as_root apt-get update
        else
            as_root apt-get update -qq
        fi
        say "apt-get install (a minute or two)"
        if [ "$terminal" = 1 ]; then
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
        else
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        fi
        if [[ " ${missing[*]} " == *" pulseaudio "* ]]; then
            keep_pulseaudio_private "the tests start their own"
        fi
    fi
    if [ "$mode" = test ] && [ -f /etc/systemd/system/appliance.service ]; then
        keep_pulseaudio_private "it would take the sound card from the appliance on this machine"
    fi
else
    say "not a Debian system: make sure PortAudio's headers and espeak-ng are installed"
fi
[ "$packages_only" = 0 ] || exit 0

if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$python" --version 2>&1)"
    "$python" -m venv .venv
fi

# Reinstall only when the project's requirements changed.
extras=""
[ "$mode" = test ] && extras="[test]"
stamp=".venv/.appliance-${mode}.stamp"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
log=.venv/pip-install.log

# pip install "$@", announced as $1
pip_step() {
    local what=$1
    shift
    say "pip: $what"
    local pip=(.venv/bin/python -m pip install --disable-pip-version-check "$@")
    if [ "$terminal" = 1 ]; then
        "${pip[@]}" || { say "pip failed (its output is above)"; exit 1; }
    elif ! "${pip[@]}" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        say "pip failed; the whole log is in $log"
        exit 1
    fi
}

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    : >"$log"
    pip_step "upgrading pip" --upgrade pip
    pip_step "installing the appliance${extras:+ with test extras} and its dependencies (PyAudio compiles; a minute or more)" \
        -e ".${extras}"
    echo "$want" >"$stamp"
fi
say "ready: .venv/bin/appliance"
