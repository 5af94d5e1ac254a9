#!/usr/bin/env bash
# Install (or upgrade, or remove) the voice appliance on Raspberry Pi OS.
#
#   sudo scripts/install.sh --hat respeaker-2mic            first install, asks for the API key
#   sudo scripts/install.sh                                 upgrade: keeps config, key and HAT setup
#   sudo scripts/install.sh --root /mnt/img --hat voicehat --api-key-file key.txt --non-interactive
#                                                           lay the files into a mounted image
#   sudo scripts/install.sh --uninstall [--purge]
#
# Run `scripts/install.sh --help` for every option.  Safe to run again: every step only
# changes what differs, so a second identical run changes nothing.
set -euo pipefail

PROG=install.sh

# Paths inside the target system (prefixed with --root DIR when laying out an image).
OPT_DIR=/opt/appliance
VENV=$OPT_DIR/venv
SRC_COPY=$OPT_DIR/src
ETC_DIR=/etc/appliance
CONFIG=$ETC_DIR/config.toml
KEY_FILE=$ETC_DIR/gemini-api-key
STATE_DIR=/var/lib/appliance
UNIT_DIR=/etc/systemd/system
UNIT=appliance.service
FIRSTBOOT_UNIT=appliance-firstboot.service
WANTS_DIR=$UNIT_DIR/multi-user.target.wants
CLI_LINK=/usr/local/bin/appliance
CONTROL_SOCKET=/run/appliance/control.sock
SERVICE_USER=appliance
DEVICE_GROUPS=(audio gpio spi)
BLOCK_BEGIN="# >>> appliance"
BLOCK_END="# <<< appliance"
HATS="respeaker-2mic respeaker-2mic-v1 respeaker-2mic-v2 voicehat voice-bonnet usb i2s-inmp441-max98357a"

usage() {
    cat <<EOF
Usage: sudo scripts/install.sh [options]

Installs the voice appliance: apt packages, a virtualenv in $VENV with the package,
the system user '$SERVICE_USER', the systemd unit, $CONFIG (never overwritten) and
the API key in $KEY_FILE (mode 0600, read only by systemd).

  --hat NAME            the sound hardware; writes /boot/firmware/config.txt (inside a
                        marked block, with a one-time backup) and that hardware's keys in
                        config.toml (devices, rates, button pin, LEDs). NAME is one of:
                          respeaker-2mic           ReSpeaker 2-Mics Pi HAT; v1 (WM8960) or v2
                                                   (TLV320AIC3104) is told apart on the I2C bus
                          respeaker-2mic-v1|-v2    the same, revision given
                          voicehat                 Google AIY Voice HAT (v1 kit)
                          voice-bonnet             Adafruit Voice Bonnet (WM8960)
                          usb                      USB microphone and speaker (no overlay)
                          i2s-inmp441-max98357a    INMP441 mic + MAX98357A amp on a breadboard
                        Given again, it rewrites those keys and the block (the owner's
                        other settings stay); without --hat both are left as they are.
  --api-key-file FILE   read the Gemini API key from FILE ("-" reads standard input).
                        Without it: keep the installed key, or ask for it (input hidden).
  --non-interactive     never ask; a missing key is reported, not asked for
  --root DIR            lay the files into a mounted image root (DIR/boot/firmware is the
                        boot partition): no apt, pip or systemctl; the unit is enabled by
                        symlink and a first-boot unit builds the venv on the Pi itself.
                        Without sudo it works on a tree you can write to (one you built or
                        unpacked yourself): the files it writes stay yours instead of going
                        to root and to '$SERVICE_USER' (no chown), and the first boot on the
                        Pi gives them their owners. Everything else needs root.
  --source DIR          the appliance source to install (default: this script's checkout)
  --skip-deps           no apt and no pip (tests; or a venv you built yourself);
                        the environment variable APPLIANCE_SKIP_DEPS=1 does the same
  --defer-deps          lay everything out now, but leave apt, pip and the first start
                        to a first-boot unit (used by provision-image.sh's firstrun.sh,
                        which runs before the network is up; implied by --root)
  --no-start            enable the service but do not (re)start it now
  --uninstall           remove the program, the unit and the venv; keep the config, the
                        key, the state (timers, volume) and the user that owns it
  --purge               with --uninstall: remove those too, and the config.txt block
  -h, --help            this text

Exit status: 0 done, 1 failed, 2 bad usage.
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2; exit 2; }

# ----------------------------------------------------------------------------- options

HAT=""
KEY_SOURCE=""
NON_INTERACTIVE=0
ROOT=""
SOURCE=""
SKIP_DEPS=${APPLIANCE_SKIP_DEPS:-0}
NO_START=0
DEFER_DEPS=0
FIRSTBOOT=0
UNINSTALL=0
PURGE=0

need_value() {
    if [ "$#" -lt 2 ] || [ -z "$2" ]; then
        usage_error "$1 needs a value"
    fi
}

parse_args() {
    while [ "$#" -gt 0 ]; do
        case "$1" in
            --hat) need_value "$@"; HAT=$2; shift 2 ;;
            --hat=*) HAT=${1#*=}; shift ;;
            --api-key-file) need_value "$@"; KEY_SOURCE=$2; shift 2 ;;
            --api-key-file=*) KEY_SOURCE=${1#*=}; shift ;;
            --root) need_value "$@"; ROOT=$2; shift 2 ;;
            --root=*) ROOT=${1#*=}; shift ;;
            --source) need_value "$@"; SOURCE=$2; shift 2 ;;
            --source=*) SOURCE=${1#*=}; shift ;;
            --non-interactive) NON_INTERACTIVE=1; shift ;;
            --skip-deps) SKIP_DEPS=1; shift ;;
            --defer-deps) DEFER_DEPS=1; shift ;;
            --no-start) NO_START=1; shift ;;
            --firstboot) FIRSTBOOT=1; NO_START=1; NON_INTERACTIVE=1; shift ;;
            --uninstall) UNINSTALL=1; shift ;;
            --purge) PURGE=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage_error "unknown option '$1'" ;;
        esac
    done
    if [ -n "$HAT" ] && [[ " $HATS " != *" $HAT "* ]]; then
        usage_error "unknown --hat '$HAT'; use one of: ${HATS// /, }"
    fi
    if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
        usage_error "--purge only goes with --uninstall"
    fi
    if [ "$UNINSTALL" = 1 ] && { [ -n "$HAT" ] || [ -n "$KEY_SOURCE" ]; }; then
        usage_error "--uninstall takes no --hat or --api-key-file"
    fi
    case "$SKIP_DEPS" in 0|1) ;; *) usage_error "APPLIANCE_SKIP_DEPS must be 0 or 1" ;; esac
}

# ----------------------------------------------------------------------------- file helpers

# The uid/gid of the service user inside the target (numeric: an image's ids
# need not match this machine's).
SERVICE_UID=""
SERVICE_GID=""

# 1 when a normal user lays out a tree of their own (--root without sudo): only root may
# give files away, so they keep that user as owner until the Pi's first boot.
KEEP_OWNERS=0

# chown, except for a normal user's tree (see KEEP_OWNERS).
set_owner() {
    [ "$KEEP_OWNERS" = 1 ] || chown "$@"
}

# Put $1's content at $2 with mode $3 and owner $4:$5, touching nothing that is already right.
install_file() {
    local src=$1 dest=$2 mode=$3 owner=$4 group=$5
    if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$src" "$dest"; then
        chmod "$mode" "$dest"
        set_owner "$owner:$group" "$dest"
        return 0
    fi
    mkdir -p "$(dirname "$dest")"
    local tmp
    tmp=$(mktemp "$(dirname "$dest")/.install.XXXXXX")
    cat "$src" >"$tmp"
    chmod "$mode" "$tmp"
    set_owner "$owner:$group" "$tmp"
    mv -f "$tmp" "$dest"
}

# Standard input to $1 (mode $2, owner $3:$4), only if it differs.
write_file() {
    local dest=$1 mode=$2 owner=$3 group=$4 tmp
    mkdir -p "$(dirname "$dest")"
    tmp=$(mktemp "$(dirname "$dest")/.install.XXXXXX")
    cat >"$tmp"
    install_file "$tmp" "$dest" "$mode" "$owner" "$group"
    rm -f "$tmp"
}

ensure_dir() {
    local dir=$1 mode=$2 owner=$3 group=$4
    mkdir -p "$dir"
    chmod "$mode" "$dir"
    set_owner "$owner:$group" "$dir"
}

ensure_symlink() {
    local target=$1 link=$2
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then
        return 0
    fi
    mkdir -p "$(dirname "$link")"
    ln -sfn "$target" "$link"
}

remove_path() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        rm -rf -- "$1"
        say "removed ${1#"$ROOT"}"
    fi
}

# ----------------------------------------------------------------------------- environment

T=""   # the target root prefix: "" or the --root directory

# The nearest existing directory at or above $1.
existing_parent() {
    local dir=$1
    while [ ! -e "$dir" ] && [ "$dir" != / ]; do
        dir=$(dirname "$dir")
    done
    printf '%s\n' "$dir"
}

# Everything a --root run writes must be writable by whoever runs it; say which is not.
check_root_writable() {
    local path where
    for path in "$T$ETC_DIR" "$T$STATE_DIR" "$T$OPT_DIR" "$T$WANTS_DIR" "$(dirname "$T$CLI_LINK")" \
                "$T/etc/passwd" "$T/etc/group" "$T/etc/shadow" "$T/etc/gshadow" "$(boot_config_path)"; do
        where=$(existing_parent "$path")
        [ -w "$where" ] && continue
        die "--root $ROOT: ${where#"$T"} is not writable by $(id -un); run with sudo, or use a tree you own"
    done
}

resolve_paths() {
    if [ "$(id -u)" -ne 0 ]; then
        # A tree of one's own needs no root; this machine and --firstboot do.
        if [ -z "$ROOT" ] || [ "$FIRSTBOOT" = 1 ]; then
            die "run as root: sudo $0 $*"
        fi
        KEEP_OWNERS=1
    fi
    if [ -n "$ROOT" ]; then
        ROOT=${ROOT%/}
        [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
        [ -f "$ROOT/etc/passwd" ] || die "--root $ROOT has no etc/passwd; give the mounted root file system of the image"
        ROOT=$(cd "$ROOT" && pwd -P)
        [ "$ROOT" != / ] || die "--root / is this machine; leave out --root instead"
        T=$ROOT
        DEFER_DEPS=1
        check_root_writable
    fi
    if [ "$FIRSTBOOT" = 1 ]; then
        DEFER_DEPS=0
    fi
    if [ -z "$SOURCE" ]; then
        SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
    else
        [ -d "$SOURCE" ] || die "--source $SOURCE is not a directory"
        SOURCE=$(cd "$SOURCE" && pwd -P)
    fi
}

check_source() {
    local needed
    for needed in pyproject.toml appliance/cli.py systemd/$UNIT scripts/install.sh; do
        [ -f "$SOURCE/$needed" ] || die "$SOURCE is not the appliance source ($needed is missing); use --source DIR"
    done
}

# Python runs the config writer: the venv's on this machine once it exists, else the
# system's with the source on its path (an image, --skip-deps, --defer-deps).
run_config_python() {
    if [ -z "$T" ] && [ -x "$VENV/bin/python" ]; then
        "$VENV/bin/python" "$@"
        return
    fi
    local py=${PYTHON:-python3}
    command -v "$py" >/dev/null 2>&1 || die "no $py on this machine; it is needed to write the config"
    PYTHONPATH="$SOURCE${PYTHONPATH:+:$PYTHONPATH}" "$py" "$@"
}

boot_config_path() {
    if [ -f "$T/boot/firmware/config.txt" ] || [ -d "$T/boot/firmware" ]; then
        printf '%s\n' "$T/boot/firmware/config.txt"
    elif [ -f "$T/boot/config.txt" ]; then
        printf '%s\n' "$T/boot/config.txt"      # Bullseye and older
    else
        printf '%s\n' "$T/boot/firmware/config.txt"
    fi
}

# ----------------------------------------------------------------------------- hardware presets

HAT_TITLE=""
HAT_BOOT=()       # config.txt lines
HAT_SETTINGS=()   # "section key toml-value"
HAT_APT=()
HAT_NOTES=()
FIRSTBOOT_HAT=""  # a --hat the first-boot unit repeats, to detect what an image could not

# The ReSpeaker's codec answers on I2C bus 1: WM8960 at 0x1a (v1), TLV320AIC3104 at 0x18
# (v2). A bound driver shows as UU.  Prints v1, v2 or nothing.
detect_respeaker_revision() {
    command -v i2cdetect >/dev/null 2>&1 || return 0
    if [ -z "$T" ] && [ ! -e /dev/i2c-1 ]; then
        # Raspberry Pi OS ships with I2C off: switch it on for this boot only (as raspi-config does).
        if command -v dtparam >/dev/null 2>&1; then dtparam i2c_arm=on 2>/dev/null || true; fi
        modprobe i2c-dev 2>/dev/null || true
        if command -v udevadm >/dev/null 2>&1; then udevadm settle --timeout=5 2>/dev/null || true; fi
    fi
    local grid
    grid=$(i2cdetect -y 1 2>/dev/null) || return 0
    awk '
        $1 == "10:" {
            v2 = ($10 == "18" || $10 == "UU")
            v1 = ($12 == "1a" || $12 == "UU")
            if (v1 && !v2) print "v1"
            else if (v2 && !v1) print "v2"
        }' <<<"$grid"
}

preset_wm8960() {
    HAT_SETTINGS+=(
        'audio input_device "wm8960"'
        'audio output_device "wm8960"'
        'audio input_channel -1'
        'audio input_rate 48000'
        'audio input_channels 2'
        'audio input_format "int16"'
        'audio output_rate 48000'
    )
    HAT_NOTES+=("the WM8960 runs capture and playback at one rate, so both are set to 48000 Hz; the two microphones are mixed (audio.input_channel = -1)")
}

preset_i2s_s32() {
    local device=$1
    HAT_SETTINGS+=(
        "audio input_device \"$device\""
        "audio output_device \"$device\""
        'audio input_channel 0'
        'audio input_rate 48000'
        'audio input_channels 2'
        'audio input_format "int32"'
        'audio output_rate 48000'
    )
}

# The HATs' APA102/DotStar LEDs: three on hardware SPI0 (data and clock pins -1) or on the
# given data and clock pins, bit-banged.  Every strip key is written, so switching HATs leaves
# no pins of the last one behind.
preset_apa102_leds() {
    local data=$1 clock=$2
    HAT_SETTINGS+=(
        'leds kind "apa102"'
        'leds count 3'
        'leds spi_bus 0'
        'leds spi_device 1'
        "leds data_pin $data"
        "leds clock_pin $clock"
    )
}

load_hat_preset() {
    local hat=$1 revision
    HAT_BOOT=() HAT_SETTINGS=() HAT_APT=() HAT_NOTES=()
    if [ "$hat" = respeaker-2mic ]; then
        revision=$(detect_respeaker_revision)
        if [ -z "$revision" ]; then
            warn "could not read I2C bus 1 to tell the ReSpeaker's revision; assuming v1 (WM8960)." \
                 "If the board is printed v2.0, run again with --hat respeaker-2mic-v2"
            revision=v1
            # An image cannot see the board: look again on the Pi's first boot.
            FIRSTBOOT_HAT=respeaker-2mic
        else
            say "ReSpeaker 2-Mics HAT $revision found on I2C bus 1"
        fi
        hat=respeaker-2mic-$revision
    fi
    case "$hat" in
        respeaker-2mic-v1)
            HAT_TITLE="ReSpeaker 2-Mics Pi HAT v1 (WM8960)"
            HAT_BOOT=(dtparam=i2s=on dtparam=spi=on dtoverlay=wm8960-soundcard)
            preset_wm8960
            HAT_SETTINGS+=('button enabled true' 'button pin 17')
            preset_apa102_leds -1 -1
            HAT_NOTES+=("the HAT's three APA102 LEDs show the state over SPI0 (/dev/spidev0.1; dtparam=spi=on is in config.txt): leds.kind = apa102, leds.colors changes their colours")
            ;;
        respeaker-2mic-v2)
            HAT_TITLE="ReSpeaker 2-Mics Pi HAT v2.0 (TLV320AIC3104)"
            HAT_BOOT=(dtparam=i2s=on dtparam=spi=on dtoverlay=respeaker-2mic-v2_0-overlay)
            HAT_SETTINGS+=(
                'audio input_device "seeed2micvoicec"'
                'audio output_device "seeed2micvoicec"'
                'audio input_channel -1'
                'audio input_rate 48000'
                'audio input_channels 2'
                'audio input_format "auto"'
                'audio output_rate 48000'
                'button enabled true' 'button pin 17'
            )
            preset_apa102_leds -1 -1
            HAT_APT=(device-tree-compiler)
            HAT_NOTES+=("the HAT's three APA102 LEDs show the state over SPI0 (/dev/spidev0.1; dtparam=spi=on is in config.txt): leds.kind = apa102, leds.colors changes their colours")
            ;;
        voicehat)
            HAT_TITLE="Google AIY Voice HAT"
            HAT_BOOT=(dtparam=i2s=on dtoverlay=googlevoicehat-soundcard)
            preset_i2s_s32 googlevoicehat
            HAT_SETTINGS+=('button enabled true' 'button pin 23' 'leds kind "pwm"' 'leds pin 25')
            HAT_NOTES+=("the voiceHAT takes only 32-bit, 48 kHz, stereo, both ways")
            ;;
        voice-bonnet)
            HAT_TITLE="Adafruit Voice Bonnet (WM8960)"
            HAT_BOOT=(dtparam=i2s=on dtoverlay=wm8960-soundcard)
            preset_wm8960
            HAT_SETTINGS+=('button enabled true' 'button pin 17')
            preset_apa102_leds 5 6
            HAT_NOTES+=("the bonnet's three DotStar LEDs show the state, bit-banged on GPIO5 (data) and GPIO6 (clock), no SPI needed: leds.kind = apa102; gpiozero also drives GPIO7 as their unused chip select, so keep it free")
            ;;
        usb)
            HAT_TITLE="USB microphone and speaker"
            HAT_BOOT=()
            HAT_SETTINGS+=(
                'audio input_device "USB"'
                'audio output_device "USB"'
                'audio input_channel 0'
                'audio input_rate 0'
                'audio input_channels 0'
                'audio input_format "auto"'
                'audio output_rate 0'
                'button enabled true' 'button pin 17' 'leds kind "pwm"' 'leds pin 12'
            )
            HAT_NOTES+=("devices are matched by the name part \"USB\"; with two USB sound devices, set audio.input_device and output_device to a longer part of each name (appliance devices lists them)")
            ;;
        i2s-inmp441-max98357a)
            HAT_TITLE="INMP441 microphone + MAX98357A amplifier (I2S)"
            HAT_BOOT=(dtparam=i2s=on dtoverlay=googlevoicehat-soundcard)
            preset_i2s_s32 googlevoicehat
            HAT_SETTINGS+=('button enabled true' 'button pin 17' 'leds kind "pwm"' 'leds pin 12')
            HAT_NOTES+=("mic and amp share the I2S clocks, so one overlay drives both at 32-bit 48 kHz stereo; tie the INMP441's L/R pin to GND (left slot, channel 0)")
            ;;
    esac
    case "$hat" in respeaker-2mic*) HAT_APT+=(i2c-tools) ;; esac
    HAT=$hat
}

# ----------------------------------------------------------------------------- apt, venv, pip

# procps: the unit's ExecReload= (systemctl reload) sends its SIGHUP with /bin/kill
APT_PACKAGES=(alsa-utils portaudio19-dev python3-venv python3-dev gcc libc6-dev procps)

apt_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

wait_for_clock() {
    # apt and TLS need a right clock; a Pi without an RTC boots with the last saved time.
    command -v timedatectl >/dev/null 2>&1 || return 0
    local tries=0
    while [ "$(timedatectl show -p NTPSynchronized --value 2>/dev/null)" != yes ]; do
        if [ "$tries" -eq 0 ]; then say "waiting up to 90 s for the clock to be synchronised"; fi
        tries=$((tries + 1))
        if [ "$tries" -gt 90 ]; then
            warn "the clock is still not synchronised; carrying on"
            return 0
        fi
        sleep 1
    done
}

install_apt_packages() {
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: this installer is for Raspberry Pi OS / Debian (use --skip-deps to lay out files only)"
    local packages=("${APT_PACKAGES[@]}" "${HAT_APT[@]}") missing=() pkg
    for pkg in "${packages[@]}"; do
        apt_installed "$pkg" || missing+=("$pkg")
    done
    # lgpio: gpiozero's pin factory on Pi OS. PyPI has no wheels for Trixie's Python 3.13,
    # so it comes from apt and the venv sees it through --system-site-packages.
    if ! apt_installed python3-lgpio; then
        if apt-cache show python3-lgpio >/dev/null 2>&1; then
            missing+=(python3-lgpio)
        else
            warn "no python3-lgpio package in the apt sources: GPIO needs it on a Raspberry Pi"
        fi
    fi
    [ "${#missing[@]}" -gt 0 ] || return 0
    wait_for_clock
    say "installing apt packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build_venv() {
    local py=${PYTHON:-python3}
    command -v "$py" >/dev/null 2>&1 || die "no $py; install python3"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$("$py" --version 2>&1) is too old; the appliance needs Python 3.11 or newer (Bookworm or later)"
    local want have=""
    want=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [ -x "$VENV/bin/python" ]; then
        have=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    fi
    if [ "$have" != "$want" ]; then
        [ -z "$have" ] || say "Python changed ($have -> $want): rebuilding the venv"
        rm -rf "$VENV"
        say "creating the venv in $VENV"
        "$py" -m venv --system-site-packages "$VENV"
    fi
    # Build from a scratch copy: setuptools writes build/ and *.egg-info next to the source.
    local build log
    build=$(mktemp -d)
    log=$(mktemp)
    cp -a "$SRC_COPY/." "$build/"
    say "installing the appliance into the venv (PyAudio compiles; a few minutes on a Pi)"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --upgrade "$build" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -rf "$build" "$log"
        die "pip could not install the appliance (the lines above say why)"
    fi
    rm -rf "$build" "$log"
}

# ----------------------------------------------------------------------------- source copy

# The source, without caches, in $T/opt/appliance/src: the first-boot unit installs from
# it and the README is the unit's documentation.
sync_source() {
    local dest=$T$SRC_COPY
    if [ "$(cd "$dest" 2>/dev/null && pwd -P)" = "$SOURCE" ]; then
        # Running from the installed copy (first boot): a --root run without sudo left it
        # owned by whoever made the image, and root runs this code.
        set_owner 0:0 "$T$OPT_DIR"
        set_owner -R 0:0 "$dest"
        return 0
    fi
    ensure_dir "$T$OPT_DIR" 0755 0 0
    ensure_dir "$dest" 0755 0 0
    local -A wanted=()
    local rel top changed=()
    while IFS= read -r -d '' rel; do
        rel=${rel#./}
        wanted[$rel]=1
        cmp -s "$SOURCE/$rel" "$dest/$rel" || changed+=("$rel")
    done < <(
        cd "$SOURCE"
        for top in pyproject.toml README.md LICENSE appliance scripts systemd; do
            [ -e "$top" ] || continue
            find "./$top" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '.*' -print0
        done
    )
    if [ "${#changed[@]}" -gt 0 ]; then
        (cd "$SOURCE" && cp --parents -f -t "$dest" -- "${changed[@]}")
    fi
    while IFS= read -r -d '' rel; do
        rel=${rel#./}
        [ -n "${wanted[$rel]:-}" ] || rm -f -- "${dest:?}/$rel"
    done < <(cd "$dest" && find . -type f -print0)
    find "$dest" -mindepth 1 -type d -empty -delete
    # Modes by kind, whatever the source's file system says (FAT has none): the scripts
    # are executable, everything else is plain data.
    set_owner -R 0:0 "$dest"
    find "$dest" -type f -exec chmod 0644 {} +
    if [ -d "$dest/scripts" ]; then
        find "$dest/scripts" -type f -name '*.sh' -exec chmod 0755 {} +
    fi
    find "$dest" -type d -exec chmod 0755 {} +
}

# ----------------------------------------------------------------------------- user and groups

# Highest free system id (from SYS_UID_MAX down) unused in both files given.
free_system_id() {
    local defs=$T/etc/login.defs low=100 high=999 id
    if [ -f "$defs" ]; then
        low=$(awk '$1 == "SYS_UID_MIN" {print $2}' "$defs"); low=${low:-100}
        high=$(awk '$1 == "SYS_UID_MAX" {print $2}' "$defs"); high=${high:-999}
    fi
    for ((id = high; id >= low; id--)); do
        if ! awk -F: -v id="$id" '$3 == id {found = 1} END {exit !found}' "$@"; then
            printf '%s\n' "$id"
            return 0
        fi
    done
    die "no free system id between $low and $high in ${*#"$T"}"
}

# Append a line to a colon file only when no entry has that name.
add_entry() {
    local file=$1 name=$2 line=$3
    [ -f "$file" ] || return 0
    awk -F: -v n="$name" '$1 == n {found = 1} END {exit !found}' "$file" && return 0
    printf '%s\n' "$line" >>"$file"
}

# Add user $3 to the member list (field $2) of group $1 in file $4.
add_member() {
    local group=$1 field=$2 user=$3 file=$4 tmp
    [ -f "$file" ] || return 0
    awk -F: -v g="$group" -v f="$field" -v u="$user" '
        BEGIN {OFS = ":"}
        $1 == g {
            n = split($f, members, ",")
            for (i = 1; i <= n; i++) if (members[i] == u) {print; next}
            $f = ($f == "" ? u : $f "," u)
        }
        {print}' "$file" >"$file.appliance-new"
    if cmp -s "$file" "$file.appliance-new"; then
        rm -f "$file.appliance-new"
    else
        tmp=$file.appliance-new
        chmod --reference="$file" "$tmp"
        set_owner --reference="$file" "$tmp"
        mv -f "$tmp" "$file"
    fi
}

group_id() {
    awk -F: -v n="$1" '$1 == n {print $3; exit}' "$T/etc/group"
}

ensure_user_in_image() {
    local passwd=$T/etc/passwd group=$T/etc/group shadow=$T/etc/shadow gshadow=$T/etc/gshadow
    [ -f "$group" ] || die "$group is missing"
    local name id days
    days=$(($(date +%s) / 86400))
    for name in "${DEVICE_GROUPS[@]}"; do
        if [ -z "$(group_id "$name")" ]; then
            id=$(free_system_id "$group")
            add_entry "$group" "$name" "$name:x:$id:"
            add_entry "$gshadow" "$name" "$name:!::"
            say "created group $name ($id) in the image"
        fi
    done
    if ! awk -F: -v n="$SERVICE_USER" '$1 == n {found = 1} END {exit !found}' "$passwd"; then
        id=$(group_id "$SERVICE_USER")
        if [ -z "$id" ]; then
            id=$(free_system_id "$passwd" "$group")
            add_entry "$group" "$SERVICE_USER" "$SERVICE_USER:x:$id:"
            add_entry "$gshadow" "$SERVICE_USER" "$SERVICE_USER:!::"
        fi
        local uid=$id
        if awk -F: -v id="$uid" '$3 == id {found = 1} END {exit !found}' "$passwd"; then
            uid=$(free_system_id "$passwd")
        fi
        add_entry "$passwd" "$SERVICE_USER" "$SERVICE_USER:x:$uid:$id:Voice appliance:$STATE_DIR:/usr/sbin/nologin"
        add_entry "$shadow" "$SERVICE_USER" "$SERVICE_USER:!:$days::::::"
        say "created user $SERVICE_USER ($uid) in the image"
    fi
    for name in "${DEVICE_GROUPS[@]}"; do
        add_member "$name" 4 "$SERVICE_USER" "$group"
        add_member "$name" 4 "$SERVICE_USER" "$gshadow"
    done
}

ensure_user_here() {
    local name
    for name in "${DEVICE_GROUPS[@]}"; do
        getent group "$name" >/dev/null || groupadd --system "$name"
    done
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        local group_opt=(--user-group)
        getent group "$SERVICE_USER" >/dev/null && group_opt=(--gid "$SERVICE_USER")
        useradd --system "${group_opt[@]}" --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "Voice appliance" "$SERVICE_USER"
        say "created user $SERVICE_USER"
    fi
    usermod --append --groups "$(IFS=,; echo "${DEVICE_GROUPS[*]}")" "$SERVICE_USER"
}

ensure_user() {
    if [ -n "$T" ]; then ensure_user_in_image; else ensure_user_here; fi
    SERVICE_UID=$(awk -F: -v n="$SERVICE_USER" '$1 == n {print $3; exit}' "$T/etc/passwd")
    SERVICE_GID=$(awk -F: -v n="$SERVICE_USER" '$1 == n {print $4; exit}' "$T/etc/passwd")
    if [ -z "$SERVICE_UID" ] || [ -z "$SERVICE_GID" ]; then
        die "user $SERVICE_USER was not created"
    fi
}

# ----------------------------------------------------------------------------- systemd units

firstboot_unit() {
    cat <<EOF
# Written by scripts/install.sh (--root or --defer-deps): finishes the installation on the Pi on
# its first boot (apt packages, the venv, the doctor), then removes itself.
[Unit]
Description=Finish installing the voice appliance (first boot)
Wants=network-online.target
After=network-online.target time-sync.target
Before=$UNIT
ConditionPathExists=!$VENV/bin/appliance

[Service]
Type=oneshot
ExecStart=$SRC_COPY/scripts/install.sh --firstboot${FIRSTBOOT_HAT:+ --hat $FIRSTBOOT_HAT}
TimeoutStartSec=45min
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF
}

install_units() {
    install_file "$SOURCE/systemd/$UNIT" "$T$UNIT_DIR/$UNIT" 0644 0 0
    if [ "$DEFER_DEPS" = 1 ] && [ ! -x "$T$VENV/bin/appliance" ]; then
        # A run without --hat keeps what an earlier run decided.
        if [ -n "$HAT" ] || [ ! -f "$T$UNIT_DIR/$FIRSTBOOT_UNIT" ]; then
            firstboot_unit | write_file "$T$UNIT_DIR/$FIRSTBOOT_UNIT" 0644 0 0
        fi
    fi
    if [ -n "$T" ]; then
        # What `systemctl enable` would do, without a running systemd.
        ensure_symlink "$UNIT_DIR/$UNIT" "$T$WANTS_DIR/$UNIT"
        if [ -f "$T$UNIT_DIR/$FIRSTBOOT_UNIT" ]; then
            ensure_symlink "$UNIT_DIR/$FIRSTBOOT_UNIT" "$T$WANTS_DIR/$FIRSTBOOT_UNIT"
        fi
    fi
}

# ----------------------------------------------------------------------------- config.toml

# The config writer, in Python because the package itself knows its template and its
# rules.  Arguments: the config file, the HAT, the control socket, then "section key value"
# settings.  Prints the new file; exit 4 (and the reason on stderr) if it does not load.
# A key is set by replacing its line within its section, commented out or not, and
# dropping later uncommented duplicates; a missing key goes right under the section
# header, a missing section at the end.  So rerunning changes nothing.
CONFIG_WRITER='
import os, re, sys, tempfile
if sys.version_info < (3, 11):
    sys.exit("Python %s is too old to write the config; set PYTHON to Python 3.11 or newer" % sys.version.split()[0])
from appliance.settings.loader import load_config
from appliance.settings.errors import ConfigError
from appliance.settings.template import config_template

HEADER = re.compile(r"^\s*\[([^\]]*)\]\s*(#.*)?$")

def set_key(lines, section, key, value, note):
    wanted = f"{key} = {value}{note}"
    plain = re.compile(rf"^\s*{re.escape(key)}\s*=")
    commented = re.compile(rf"^#{re.escape(key)}\s*=")
    out, current, header_at, done = [], None, None, False
    for line in lines:
        match = HEADER.match(line)
        if match:
            current = match.group(1).strip()
            out.append(line)
            if current == section and header_at is None:
                header_at = len(out)
            continue
        if current == section and (plain.match(line) or (not done and commented.match(line))):
            if not done:
                out.append(wanted)
                done = True
            continue
        out.append(line)
    if not done:
        if header_at is None:
            out += ["", f"[{section}]", wanted]
        else:
            out.insert(header_at, wanted)
    return out

path, hat, socket, *settings = sys.argv[1:]
if os.path.exists(path):
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        sys.exit(f"cannot read {path}: {exc}")
else:
    lines = config_template().splitlines()
    # ctl and the daemon must agree on the socket: systemd puts it in /run/appliance.
    lines = set_key(lines, "control", "socket", f"\"{socket}\"", "  # set by install.sh")
for item in settings:
    section, key, value = item.split(" ", 2)
    lines = set_key(lines, section, key, value, f"  # set by install.sh --hat {hat}")
content = "\n".join(lines) + "\n"

with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False, encoding="utf-8") as handle:
    handle.write(content)
try:
    load_config(handle.name, env={})
    problem = ""
except ConfigError as exc:
    problem = str(exc).replace(handle.name, path)
finally:
    os.unlink(handle.name)
sys.stdout.write(content)
if problem:
    print(problem, file=sys.stderr)
    sys.exit(4)
'

write_config() {
    local dest=$T$CONFIG
    if [ -f "$dest" ] && [ -z "$HAT" ]; then
        say "keeping ${CONFIG} as it is"
        # an image laid out without sudo left it owned by its maker
        [ "$FIRSTBOOT" = 0 ] || set_owner 0:0 "$dest"
        return 0
    fi
    local work problem rc=0
    work=$(mktemp)
    problem=$(run_config_python -c "$CONFIG_WRITER" "$dest" "$HAT" "$CONTROL_SOCKET" "${HAT_SETTINGS[@]}" \
        2>&1 >"$work") || rc=$?
    case "$rc" in
        0) ;;
        4) warn "${CONFIG} does not load: $problem" ;;
        *) rm -f "$work"; die "could not write ${CONFIG}: ${problem##*$'\n'}" ;;
    esac
    write_file "$dest" 0644 0 0 <"$work"
    rm -f "$work"
}

# ----------------------------------------------------------------------------- API key

KEY_PRESENT=0

write_key() {
    local dest=$T$KEY_FILE key=""
    if [ -n "$KEY_SOURCE" ]; then
        if [ "$KEY_SOURCE" = - ]; then
            key=$(cat)
        else
            [ -f "$KEY_SOURCE" ] || die "--api-key-file $KEY_SOURCE does not exist"
            [ -r "$KEY_SOURCE" ] || die "--api-key-file $KEY_SOURCE cannot be read"
            key=$(<"$KEY_SOURCE")
        fi
    elif [ -s "$dest" ]; then
        chmod 0600 "$dest"
        set_owner 0:0 "$dest"
        KEY_PRESENT=1
        return 0
    elif [ "$NON_INTERACTIVE" = 0 ] && [ -t 0 ]; then
        read -r -s -p "Gemini API key (input hidden, Enter to skip): " key
        printf '\n'
    fi
    # Trim surrounding whitespace without ever printing the key.
    key=${key#"${key%%[![:space:]]*}"}
    key=${key%"${key##*[![:space:]]}"}
    if [ -z "$key" ]; then
        [ -z "$KEY_SOURCE" ] || die "--api-key-file ${KEY_SOURCE} is empty; put the API key in it"
        warn "no API key yet: write it to $KEY_FILE (mode 0600), or run again with --api-key-file FILE"
        return 0
    fi
    if [[ $key =~ [[:space:]] ]]; then
        die "the API key must be one line with no spaces (check --api-key-file ${KEY_SOURCE:-input})"
    fi
    ensure_dir "$T$ETC_DIR" 0755 0 0
    local tmp
    tmp=$(umask 077 && mktemp "$dest.XXXXXX")
    printf '%s\n' "$key" >"$tmp"
    key=""
    install_file "$tmp" "$dest" 0600 0 0
    rm -f "$tmp"
    KEY_PRESENT=1
}

# ----------------------------------------------------------------------------- config.txt

REBOOT_NEEDED=0

write_boot_config() {
    [ -n "$HAT" ] || return 0
    local file
    file=$(boot_config_path)
    if [ ! -f "$file" ]; then
        if [ "${#HAT_BOOT[@]}" -gt 0 ]; then
            warn "no ${file#"$T"}: add these lines to the Pi's config.txt yourself: ${HAT_BOOT[*]}"
        fi
        return 0
    fi
    local work
    work=$(mktemp)
    {
        if [ "${#HAT_BOOT[@]}" -gt 0 ]; then
            printf '%s (%s; install.sh --hat %s rewrites this block)\n' "$BLOCK_BEGIN" "$HAT_TITLE" "$HAT"
            printf '[all]\n'
            printf '%s\n' "${HAT_BOOT[@]}"
            printf '%s\n' "$BLOCK_END"
        fi
    } >"$work.block"
    BLOCK=$work.block BEGIN_MARK=$BLOCK_BEGIN END_MARK=$BLOCK_END awk '
        BEGIN {
            while ((getline line < ENVIRON["BLOCK"]) > 0) block = block line "\n"
        }
        index($0, ENVIRON["BEGIN_MARK"]) == 1 { skipping = 1; if (!done) printf "%s", block; done = 1; next }
        skipping && index($0, ENVIRON["END_MARK"]) == 1 { skipping = 0; next }
        skipping { next }
        { print; last = $0; n++ }
        END {
            if (!done && block != "") {
                if (n > 0 && last != "") print ""
                printf "%s", block
            }
        }' "$file" >"$work"
    rm -f "$work.block"
    if cmp -s "$work" "$file"; then
        rm -f "$work"
        return 0
    fi
    if [ ! -e "$file.appliance-backup" ]; then
        cp -p "$file" "$file.appliance-backup"
        say "saved the original as ${file#"$T"}.appliance-backup"
    fi
    cat "$work" >"$file"     # in place: the FAT boot partition keeps its mode and owner
    rm -f "$work"
    say "updated ${file#"$T"} for the $HAT_TITLE"
    REBOOT_NEEDED=1
}

check_overlay_present() {
    [ "$HAT" = respeaker-2mic-v2 ] || return 0
    local overlays
    overlays=$(dirname "$(boot_config_path)")/overlays
    [ -f "$overlays/respeaker-2mic-v2_0-overlay.dtbo" ] && return 0
    warn "the ReSpeaker v2 overlay is not in the Raspberry Pi kernel. Build it once on the Pi (Seeed's recipe):"
    cat >&2 <<EOF
    curl -fLO https://raw.githubusercontent.com/Seeed-Studio/seeed-linux-dtoverlays/master/overlays/rpi/respeaker-2mic-v2_0-overlay.dts
    dtc -I dts -O dtb -o respeaker-2mic-v2_0-overlay.dtbo respeaker-2mic-v2_0-overlay.dts
    sudo cp respeaker-2mic-v2_0-overlay.dtbo ${overlays#"$T"}/
  then reboot.
EOF
}

# ----------------------------------------------------------------------------- service

start_service() {
    if [ -n "$T" ]; then
        return 0
    fi
    if ! command -v systemctl >/dev/null 2>&1; then
        warn "no systemctl: start $VENV/bin/appliance --config $CONFIG run yourself"
        return 0
    fi
    systemctl daemon-reload
    systemctl enable "$UNIT" >/dev/null 2>&1 || systemctl enable "$UNIT"
    if [ "$DEFER_DEPS" = 1 ] && [ -f "$UNIT_DIR/$FIRSTBOOT_UNIT" ]; then
        systemctl enable "$FIRSTBOOT_UNIT" >/dev/null 2>&1 || systemctl enable "$FIRSTBOOT_UNIT"
        return 0
    fi
    if [ "$NO_START" = 1 ]; then
        return 0
    fi
    if [ "$KEY_PRESENT" = 0 ]; then
        say "not starting the service without an API key"
        return 0
    fi
    if [ "$REBOOT_NEEDED" = 1 ]; then
        say "not starting the service before the reboot (the sound card appears after it)"
        return 0
    fi
    if [ ! -x "$VENV/bin/appliance" ]; then
        say "not starting the service: there is no venv yet (--skip-deps)"
        return 0
    fi
    # Stopped while the doctor runs, so the doctor can open the sound devices.
    systemctl stop "$UNIT" 2>/dev/null || true
    run_doctor
    DOCTOR_DONE=1
    systemctl restart "$UNIT" || warn "the service did not start: journalctl -u $UNIT -e"
}

DOCTOR_DONE=0
DOCTOR_RC=""

run_doctor() {
    [ -z "$T" ] || return 0
    [ "$DEFER_DEPS" = 0 ] || return 0
    if [ ! -x "$VENV/bin/appliance" ]; then
        say "no venv yet (--skip-deps), so no doctor run"
        return 0
    fi
    say "checking the installation: appliance doctor"
    # The key as the service sees it: systemd hands it over as the credential in a directory.
    set +e
    CREDENTIALS_DIRECTORY=$ETC_DIR "$VENV/bin/appliance" --config "$CONFIG" doctor
    DOCTOR_RC=$?
    set -e
}

# ----------------------------------------------------------------------------- uninstall

remove_boot_block() {
    local file work
    file=$(boot_config_path)
    [ -f "$file" ] || return 0
    grep -qF "$BLOCK_BEGIN" "$file" || return 0
    work=$(mktemp)
    # The block goes, and with it the blank line put before it.
    BEGIN_MARK=$BLOCK_BEGIN END_MARK=$BLOCK_END awk '
        index($0, ENVIRON["BEGIN_MARK"]) == 1 { skipping = 1; blank = 0; next }
        skipping && index($0, ENVIRON["END_MARK"]) == 1 { skipping = 0; next }
        skipping { next }
        blank { print ""; blank = 0 }
        $0 == "" { blank = 1; next }
        { print }
        END { if (blank) print "" }' "$file" >"$work"
    cat "$work" >"$file"
    rm -f "$work"
    say "removed the appliance block from ${file#"$T"}"
    rm -f "$file.appliance-backup"
}

remove_user_from_image() {
    local file
    for file in passwd shadow; do
        [ -f "$T/etc/$file" ] || continue
        awk -F: -v n="$SERVICE_USER" '$1 != n' "$T/etc/$file" >"$T/etc/$file.appliance-new"
        chmod --reference="$T/etc/$file" "$T/etc/$file.appliance-new"
        set_owner --reference="$T/etc/$file" "$T/etc/$file.appliance-new"
        mv -f "$T/etc/$file.appliance-new" "$T/etc/$file"
    done
    for file in group gshadow; do
        [ -f "$T/etc/$file" ] || continue
        awk -F: -v n="$SERVICE_USER" '
            BEGIN {OFS = ":"}
            $1 == n {next}
            {
                k = split($4, members, ","); out = ""
                for (i = 1; i <= k; i++) if (members[i] != n) out = (out == "" ? members[i] : out "," members[i])
                $4 = out; print
            }' "$T/etc/$file" >"$T/etc/$file.appliance-new"
        chmod --reference="$T/etc/$file" "$T/etc/$file.appliance-new"
        set_owner --reference="$T/etc/$file" "$T/etc/$file.appliance-new"
        mv -f "$T/etc/$file.appliance-new" "$T/etc/$file"
    done
}

uninstall() {
    if [ -z "$T" ] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$UNIT" 2>/dev/null || true
    fi
    remove_path "$T$WANTS_DIR/$UNIT"
    remove_path "$T$WANTS_DIR/$FIRSTBOOT_UNIT"
    remove_path "$T$UNIT_DIR/$UNIT"
    remove_path "$T$UNIT_DIR/$FIRSTBOOT_UNIT"
    if [ -z "$T" ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload || true
    fi
    if [ -L "$T$CLI_LINK" ] && [ "$(readlink "$T$CLI_LINK")" = "$VENV/bin/appliance" ]; then
        remove_path "$T$CLI_LINK"
    fi
    remove_path "$T$OPT_DIR"
    if [ "$PURGE" = 0 ]; then
        say "kept ${CONFIG}, ${KEY_FILE}, ${STATE_DIR} and the user $SERVICE_USER (--purge removes them)"
        return 0
    fi
    remove_path "$T$ETC_DIR"
    remove_path "$T$STATE_DIR"
    remove_boot_block
    if [ -n "$T" ]; then
        remove_user_from_image
    elif getent passwd "$SERVICE_USER" >/dev/null; then
        userdel "$SERVICE_USER" || warn "could not remove the user $SERVICE_USER"
        if getent group "$SERVICE_USER" >/dev/null; then
            groupdel "$SERVICE_USER" 2>/dev/null || true
        fi
    fi
    say "purged; the groups ${DEVICE_GROUPS[*]} stay (other programs use them)"
}

# ----------------------------------------------------------------------------- the end

next_steps() {
    printf '\n'
    if [ "$DEFER_DEPS" = 1 ]; then
        say "laid out${T:+ in $T}. What happens next:"
        cat <<EOF
  - On the Pi's next boot, $FIRSTBOOT_UNIT installs the apt packages and builds the
    venv (it needs the network; a few minutes), then the appliance starts.
    Follow it with: journalctl -fu $FIRSTBOOT_UNIT
EOF
        if [ -n "$T" ]; then
            cat <<EOF
    (Or build the venv now in a chroot of the image, with qemu-user-static on a PC:
     chroot $T $SRC_COPY/scripts/install.sh --non-interactive --no-start)
EOF
        fi
        if [ "$KEEP_OWNERS" = 1 ]; then
            printf '  - Laid out without sudo: what was written belongs to %s (uid %s), not to root and\n' \
                "$(id -un)" "$(id -u)"
            printf '    %s; the first boot sets the owners (or run this again with sudo).\n' "$SERVICE_USER"
        fi
        printf '  - Then, on the Pi: sudo appliance doctor\n'
        if [ "$KEY_PRESENT" = 0 ]; then
            printf '  - There is no API key yet: write it to %s%s (mode 0600).\n' "$T" "$KEY_FILE"
        fi
        return 0
    fi
    # The doctor's sound checks mean nothing before the reboot that loads the overlay.
    if [ "$REBOOT_NEEDED" = 0 ] && [ "$DOCTOR_DONE" = 0 ]; then
        run_doctor
    fi
    say "done. Next:"
    if [ "$KEY_PRESENT" = 0 ]; then
        printf '  - Add the API key: sudo %s/scripts/install.sh --api-key-file FILE\n' "$SRC_COPY"
    fi
    if [ "$REBOOT_NEEDED" = 1 ]; then
        printf '  - Reboot so the sound card appears: sudo reboot\n'
        printf '  - Then check everything: sudo appliance doctor\n'
    fi
    if [ -n "$DOCTOR_RC" ] && [ "$DOCTOR_RC" != 0 ]; then
        printf '  - Fix what the doctor reported, then run it again: sudo appliance doctor\n'
    fi
    printf '  - Status and logs: systemctl status %s; journalctl -u %s -f\n' "$UNIT" "$UNIT"
    printf '  - Settings: sudo nano %s, then sudo systemctl restart %s\n' "$CONFIG" "$UNIT"
    printf '  - Talk to it without the button: sudo appliance ctl status | tap | volume 50\n'
}

main() {
    parse_args "$@"
    resolve_paths "$@"
    if [ "$UNINSTALL" = 1 ]; then
        uninstall
        return 0
    fi
    check_source
    umask 022
    if [ -n "$HAT" ]; then
        # Detection needs i2c-tools, so the packages come first when they are to be installed.
        case "$HAT" in respeaker-2mic) HAT_APT=(i2c-tools) ;; esac
    fi
    local deps_now=0
    if [ "$DEFER_DEPS" = 0 ] && [ "$SKIP_DEPS" = 0 ]; then
        deps_now=1
    fi
    if [ "$deps_now" = 1 ]; then
        install_apt_packages
    fi
    if [ -n "$HAT" ]; then
        load_hat_preset "$HAT"
        if [ "$deps_now" = 1 ] && [ "${#HAT_APT[@]}" -gt 0 ]; then
            install_apt_packages
        fi
    fi
    sync_source
    if [ "$deps_now" = 1 ]; then
        build_venv
    fi
    ensure_user
    ensure_dir "$T$ETC_DIR" 0755 0 0
    ensure_dir "$T$STATE_DIR" 0750 "$SERVICE_UID" "$SERVICE_GID"
    install_units
    write_config
    write_key
    write_boot_config
    check_overlay_present
    ensure_symlink "$VENV/bin/appliance" "$T$CLI_LINK"
    if [ "$FIRSTBOOT" = 1 ]; then
        rm -f "$WANTS_DIR/$FIRSTBOOT_UNIT" "$UNIT_DIR/$FIRSTBOOT_UNIT"
    fi
    start_service
    if [ "$REBOOT_NEEDED" = 1 ] && [ -z "$T" ]; then
        say "config.txt changed: reboot to load the ${HAT_TITLE} driver"
    fi
    for note in "${HAT_NOTES[@]}"; do
        say "note: $note"
    done
    next_steps
}

main "$@"
