#!/usr/bin/env bash
# Prepare a freshly flashed Raspberry Pi OS card so that its first boot installs the
# voice appliance: login user with an SSH key, Wi-Fi, the API key, the HAT.
#
#   scripts/provision-image.sh --boot /media/$USER/bootfs --ssh-key-file ~/.ssh/id_ed25519.pub \
#       --wifi-ssid Home --wifi-psk-file wifi.txt --wifi-country GB \
#       --api-key-file gemini-key.txt --hat respeaker-2mic --hostname kitchen
#
# Run `scripts/provision-image.sh --help` for every option and for where the secrets go.
set -euo pipefail

PROG=provision-image.sh
MARK="written by the appliance's scripts/provision-image.sh"
RUN_HOOK_TAIL="systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"

usage() {
    cat <<'EOF'
Usage: scripts/provision-image.sh --boot DIR --ssh-key-file FILE [options]

Writes onto the boot partition of a freshly flashed Raspberry Pi OS (Lite) card:
  appliance/src/            a copy of this source (the Pi may not reach a git host)
  appliance/install-on-pi.sh  runs scripts/install.sh on the Pi, then deletes the secrets
  appliance/api-key         the API key, until the first boot moves it to
                            /etc/appliance/gemini-api-key (mode 0600)
  user-data, network-config Trixie: cloud-init sets up the user, SSH and Wi-Fi and runs
                            the installer once the network is up (first boot), then
                            reboots if the sound card needs its overlay (network-config
                            only on a cloud-init card)
  firstrun.sh               Bookworm: the same, run by systemd.run= from cmdline.txt
                            before the network is up; the installer's first-boot unit
                            finishes on the next boot

  --boot DIR            the mounted boot partition (has cmdline.txt and config.txt)
  --ssh-key-file FILE   an SSH *public* key (.pub) for the login user (required)
  --user NAME           the login user (default: pi); no password, SSH key only. On a
                        card already set up by Raspberry Pi Imager, give Imager's user
  --hostname NAME       the Pi's host name (default: kitchen), reachable as NAME.local
  --wifi-ssid SSID      the Wi-Fi network (leave out for Ethernet)
  --wifi-psk-file FILE  a file holding the Wi-Fi passphrase
  --wifi-country CC     two-letter country code; Wi-Fi stays off on a Pi without it
  --api-key-file FILE   the Gemini API key (else add it later with install.sh)
  --hat NAME            the sound hardware, as for install.sh --hat
  --source DIR          the appliance source to copy (default: this checkout)
  --method M            auto (default), cloud-init or firstrun; auto picks cloud-init
                        when the card has cloud-init's files (Trixie), else firstrun
  -h, --help            this text

Secrets on the card: the boot partition is FAT, which has no file permissions. Until the
first boot, the API key and the Wi-Fi passphrase sit there in plain text for anyone who
holds the card; on the running Pi every local user could read them. The first boot
therefore moves the key into /etc/appliance (mode 0600) and deletes it from the boot
partition, and blanks the Wi-Fi passphrase in network-config. (firstrun.sh stores the
Wi-Fi key as the derived WPA key, not the passphrase.) The root file system is not
encrypted either: whoever has the card has the key. To keep the key off the card
entirely, leave out --api-key-file and run install.sh --api-key-file over SSH later.

Exit status: 0 done, 1 failed, 2 bad usage.
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2; exit 2; }

BOOT=""
SSH_KEY_FILE=""
LOGIN_USER=pi
HOST_NAME=kitchen
WIFI_SSID=""
WIFI_PSK_FILE=""
WIFI_COUNTRY=""
API_KEY_FILE=""
HAT=""
SOURCE=""
METHOD=auto

need_value() {
    if [ "$#" -lt 2 ] || [ -z "$2" ]; then
        usage_error "$1 needs a value"
    fi
}

parse_args() {
    while [ "$#" -gt 0 ]; do
        case "$1" in
            --boot) need_value "$@"; BOOT=$2; shift 2 ;;
            --ssh-key-file) need_value "$@"; SSH_KEY_FILE=$2; shift 2 ;;
            --user) need_value "$@"; LOGIN_USER=$2; shift 2 ;;
            --hostname) need_value "$@"; HOST_NAME=$2; shift 2 ;;
            --wifi-ssid) need_value "$@"; WIFI_SSID=$2; shift 2 ;;
            --wifi-psk-file) need_value "$@"; WIFI_PSK_FILE=$2; shift 2 ;;
            --wifi-country) need_value "$@"; WIFI_COUNTRY=$2; shift 2 ;;
            --api-key-file) need_value "$@"; API_KEY_FILE=$2; shift 2 ;;
            --hat) need_value "$@"; HAT=$2; shift 2 ;;
            --source) need_value "$@"; SOURCE=$2; shift 2 ;;
            --method) need_value "$@"; METHOD=$2; shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) usage_error "unknown option '$1'" ;;
        esac
    done
    [ -n "$BOOT" ] || usage_error "--boot DIR is required"
    [ -n "$SSH_KEY_FILE" ] || usage_error "--ssh-key-file is required: without it there is no way to log in to the appliance"
    case "$METHOD" in auto|cloud-init|firstrun) ;; *) usage_error "--method must be auto, cloud-init or firstrun" ;; esac
    [[ $LOGIN_USER =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] ||
        usage_error "--user '$LOGIN_USER' is not a valid user name (lower-case letters, digits, - and _)"
    [[ $HOST_NAME =~ ^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$ ]] ||
        usage_error "--hostname '$HOST_NAME' is not a valid host name (letters, digits and -, at most 63)"
    if [ -n "$WIFI_SSID" ]; then
        [ -n "$WIFI_PSK_FILE" ] || usage_error "--wifi-ssid needs --wifi-psk-file FILE with the passphrase"
        [ -n "$WIFI_COUNTRY" ] || usage_error "--wifi-ssid needs --wifi-country CC (the Pi keeps Wi-Fi off until it knows the country)"
        [ "${#WIFI_SSID}" -le 32 ] || usage_error "--wifi-ssid is longer than 32 characters"
        [[ $WIFI_SSID != *[[:cntrl:]]* ]] || usage_error "--wifi-ssid contains control characters"
    elif [ -n "$WIFI_PSK_FILE" ] || [ -n "$WIFI_COUNTRY" ]; then
        usage_error "--wifi-psk-file and --wifi-country go with --wifi-ssid"
    fi
    if [ -n "$WIFI_COUNTRY" ]; then
        WIFI_COUNTRY=${WIFI_COUNTRY^^}
        [[ $WIFI_COUNTRY =~ ^[A-Z]{2}$ ]] || usage_error "--wifi-country must be two letters, like GB or DE"
    fi
}

# ----------------------------------------------------------------------------- inputs

SSH_KEYS=()
WIFI_PSK=""
WIFI_PSK_HEX=""

read_ssh_keys() {
    [ -f "$SSH_KEY_FILE" ] || die "--ssh-key-file $SSH_KEY_FILE does not exist"
    if grep -q 'PRIVATE KEY' "$SSH_KEY_FILE"; then
        die "--ssh-key-file $SSH_KEY_FILE is a private key; give the public one (the .pub file)"
    fi
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        if [ -z "$line" ] || [[ $line == \#* ]]; then
            continue
        fi
        [[ $line =~ ^(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+\ [A-Za-z0-9+/=]+(\ .*)?$ ]] ||
            die "--ssh-key-file $SSH_KEY_FILE has a line that is not an SSH public key"
        SSH_KEYS+=("$line")
    done <"$SSH_KEY_FILE"
    [ "${#SSH_KEYS[@]}" -gt 0 ] || die "--ssh-key-file $SSH_KEY_FILE holds no public key"
}

read_wifi() {
    [ -n "$WIFI_SSID" ] || return 0
    [ -f "$WIFI_PSK_FILE" ] || die "--wifi-psk-file $WIFI_PSK_FILE does not exist"
    WIFI_PSK=$(<"$WIFI_PSK_FILE")
    WIFI_PSK=${WIFI_PSK%$'\n'}
    WIFI_PSK=${WIFI_PSK%$'\r'}
    if [[ $WIFI_PSK =~ ^[0-9a-fA-F]{64}$ ]]; then
        WIFI_PSK_HEX=$WIFI_PSK
        return 0
    fi
    if [ "${#WIFI_PSK}" -lt 8 ] || [ "${#WIFI_PSK}" -gt 63 ]; then
        die "the Wi-Fi passphrase in $WIFI_PSK_FILE must be 8 to 63 characters"
    fi
    [[ $WIFI_PSK != *[[:cntrl:]]* ]] || die "the Wi-Fi passphrase in $WIFI_PSK_FILE contains control characters"
    # The WPA key derived from passphrase and SSID (what wpa_passphrase prints); the
    # passphrase goes to Python on standard input, never on a command line.
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to derive the Wi-Fi key from the passphrase"
    WIFI_PSK_HEX=$(printf '%s' "$WIFI_PSK" | python3 -c '
import hashlib, sys
passphrase = sys.stdin.buffer.read()
print(hashlib.pbkdf2_hmac("sha1", passphrase, sys.argv[1].encode(), 4096, 32).hex())
' "$WIFI_SSID")
}

check_api_key() {
    [ -n "$API_KEY_FILE" ] || return 0
    [ -f "$API_KEY_FILE" ] || die "--api-key-file $API_KEY_FILE does not exist"
    local key
    key=$(<"$API_KEY_FILE")
    key=${key#"${key%%[![:space:]]*}"}
    key=${key%"${key##*[![:space:]]}"}
    [ -n "$key" ] || die "--api-key-file $API_KEY_FILE is empty"
    if [[ $key =~ [[:space:]] ]]; then
        die "--api-key-file $API_KEY_FILE must hold only the key, on one line with no spaces"
    fi
}

check_hat() {
    [ -n "$HAT" ] || return 0
    local hats
    hats=$(sed -n 's/^HATS="\(.*\)"$/\1/p' "$SOURCE/scripts/install.sh")
    [[ " $hats " == *" $HAT "* ]] || usage_error "unknown --hat '$HAT'; use one of: ${hats// /, }"
}

# ----------------------------------------------------------------------------- quoting

# A YAML double-quoted scalar.
yq() {
    local text=$1
    text=${text//\\/\\\\}
    text=${text//\"/\\\"}
    printf '"%s"' "$text"
}

# ----------------------------------------------------------------------------- writers

PAYLOAD_FILES=(pyproject.toml README.md LICENSE appliance scripts systemd)

# The files to copy, NUL-separated and relative to $SOURCE: no caches, no dot files.
payload_list() {
    local top
    cd "$SOURCE"
    for top in "${PAYLOAD_FILES[@]}"; do
        [ -e "$top" ] || continue
        find "$top" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '.*' -print0
    done
}

copy_source() {
    local dest=$BOOT/appliance/src need free size
    size=$( (payload_list | xargs -0 du -ck) | awk '$2 == "total" {kb += $1} END {print kb + 0}')
    need=$((size + 1024))
    free=$(df -Pk "$BOOT" | awk 'NR == 2 {print $4}')
    if [ -n "$free" ] && [ "$free" -lt "$need" ]; then
        die "the boot partition has ${free} KiB free; the appliance needs ${need} KiB"
    fi
    rm -rf "$dest"
    mkdir -p "$dest"
    (payload_list | xargs -0 cp --parents -t "$dest" --)
    say "copied the appliance source (${size} KiB) to appliance/src"
}

write_install_on_pi() {
    {
        printf '#!/bin/bash\n'
        printf '# %s.\n' "$MARK"
        cat <<'EOF'
# Installs the appliance from the copy on this boot partition, then deletes the secrets
# that had to travel on it. Run by cloud-init (Trixie) or firstrun.sh (Bookworm), as root;
# extra arguments go to install.sh. The log is /var/log/appliance-provision.log (root only).
set -uo pipefail
umask 077
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
boot=$(dirname "$here")
log=/var/log/appliance-provision.log
EOF
        printf 'hat=%q\n' "$HAT"
        cat <<'EOF'
args=(--non-interactive --source "$here/src")
if [ -n "$hat" ]; then args+=(--hat "$hat"); fi
if [ -f "$here/api-key" ]; then args+=(--api-key-file "$here/api-key"); fi
before=$(cksum <"$boot/config.txt")
if ! bash "$here/src/scripts/install.sh" "${args[@]}" "$@" >>"$log" 2>&1; then
    echo "appliance: installation failed; see $log" >&2
    exit 1
fi
# A new overlay needs a reboot; cloud-init's power_state reboots when this flag exists.
if [ "$(cksum <"$boot/config.txt")" != "$before" ]; then
    touch /run/appliance-reboot-needed
fi
# Now in /etc/appliance/gemini-api-key (mode 0600) and /opt/appliance/src.
rm -f "$here/api-key"
rm -rf "$here/src"
# cloud-init has configured the Wi-Fi; the passphrase need not stay readable on FAT.
if [ -f "$boot/network-config" ] && grep -q "provision-image.sh" "$boot/network-config"; then
    sed -i 's/^\( *password:\).*/\1 "removed-after-first-boot"/' "$boot/network-config"
fi
echo "appliance: installed; see $log"
EOF
    } >"$BOOT/appliance/install-on-pi.sh"
}

write_user_data() {
    local key
    {
        printf '#cloud-config\n'
        printf '# %s.\n' "$MARK"
        printf '# cloud-init runs this once, on the first boot of a Raspberry Pi OS Trixie card.\n'
        printf 'hostname: %s\n' "$(yq "$HOST_NAME")"
        printf 'manage_etc_hosts: true\n'
        printf 'ssh_pwauth: false\n'
        printf 'users:\n'
        printf '  - name: %s\n' "$(yq "$LOGIN_USER")"
        printf '    shell: /bin/bash\n'
        printf '    groups: [adm, sudo, audio, video, plugdev, netdev, gpio, i2c, spi]\n'
        printf '    sudo: "ALL=(ALL) NOPASSWD:ALL"\n'
        printf '    lock_passwd: true\n'
        printf '    ssh_authorized_keys:\n'
        for key in "${SSH_KEYS[@]}"; do
            printf '      - %s\n' "$(yq "$key")"
        done
        printf 'runcmd:\n'
        printf '  - [systemctl, enable, --now, ssh]\n'
        printf '  - [bash, /boot/firmware/appliance/install-on-pi.sh]\n'
        printf '# The sound card overlay takes effect after a reboot.\n'
        printf 'power_state:\n'
        printf '  mode: reboot\n'
        printf '  message: "appliance installed; rebooting to load the sound card driver"\n'
        printf '  condition: [test, -e, /run/appliance-reboot-needed]\n'
    } >"$BOOT/user-data"
}

write_network_config() {
    [ -n "$WIFI_SSID" ] || return 0
    local password=$WIFI_PSK
    {
        printf '# %s.\n' "$MARK"
        printf '# Applied by cloud-init on the first boot (netplan version 2, rendered for NetworkManager).\n'
        printf 'network:\n'
        printf '  version: 2\n'
        printf '  ethernets:\n'
        printf '    eth0:\n'
        printf '      dhcp4: true\n'
        printf '      optional: true\n'
        printf '  wifis:\n'
        printf '    wlan0:\n'
        printf '      dhcp4: true\n'
        printf '      optional: false\n'
        printf '      regulatory-domain: %s\n' "$(yq "$WIFI_COUNTRY")"
        printf '      access-points:\n'
        printf '        %s:\n' "$(yq "$WIFI_SSID")"
        printf '          password: %s\n' "$(yq "$password")"
    } >"$BOOT/network-config"
}

write_meta_data() {
    [ -f "$BOOT/meta-data" ] && return 0
    {
        printf '# %s.\n' "$MARK"
        printf 'instance-id: appliance-%s\n' "$(date +%Y%m%d%H%M%S)"
        printf 'dsmode: local\n'
    } >"$BOOT/meta-data"
}

write_firstrun() {
    local key
    {
        printf '#!/bin/bash\n'
        printf '# %s.\n' "$MARK"
        cat <<'EOF'
# Bookworm: run once by systemd.run= on the first boot, before the network is up. Sets up
# the login user, SSH and Wi-Fi, lays out the appliance (its first-boot unit installs the
# packages on the next boot), removes itself from cmdline.txt, and the Pi reboots.
set +e
boot=/boot/firmware
[ -d "$boot/appliance" ] || boot=/boot
payload=$boot/appliance
custom=/usr/lib/raspberrypi-sys-mods/imager_custom
EOF
        printf 'host_name=%q\n' "$HOST_NAME"
        printf 'login_user=%q\n' "$LOGIN_USER"
        printf 'ssh_keys=('
        for key in "${SSH_KEYS[@]}"; do printf ' %q' "$key"; done
        printf ' )\n'
        printf 'wifi_ssid=%q\n' "$WIFI_SSID"
        printf 'wifi_key=%q\n' "${WIFI_PSK_HEX:-$WIFI_PSK}"
        printf 'wifi_country=%q\n' "$WIFI_COUNTRY"
        cat <<'EOF'

# Raspberry Pi Imager's own firstrun.sh, if the card had one, runs first.
if [ -f "$payload/imager-firstrun.sh" ]; then
    bash "$payload/imager-firstrun.sh"
fi

# Host name.
if [ -x "$custom" ]; then
    "$custom" set_hostname "$host_name"
else
    printf '%s\n' "$host_name" >/etc/hostname
    sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$host_name/" /etc/hosts
fi

# The login user: SSH key only, no password, sudo without one. userconf (Pi OS) renames
# the image's first user and retires the console wizard that would otherwise ask for one.
if [ -x /usr/lib/userconf-pi/userconf ]; then
    /usr/lib/userconf-pi/userconf "$login_user" '*'
fi
if ! id "$login_user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$login_user"
fi
usermod --password '*' "$login_user"
for group in adm sudo audio video plugdev netdev gpio i2c spi; do
    getent group "$group" >/dev/null && usermod --append --groups "$group" "$login_user"
done
printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$login_user" >/etc/sudoers.d/010_appliance-login
chmod 0440 /etc/sudoers.d/010_appliance-login
home=$(getent passwd "$login_user" | cut -d: -f6)
install -d -m 0700 -o "$login_user" -g "$login_user" "$home/.ssh"
printf '%s\n' "${ssh_keys[@]}" >"$home/.ssh/authorized_keys"
chown "$login_user:$login_user" "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
mkdir -p /etc/ssh/sshd_config.d
printf 'PasswordAuthentication no\n' >/etc/ssh/sshd_config.d/appliance.conf
systemctl enable ssh

# Wi-Fi.
if [ -n "$wifi_ssid" ]; then
    if [ -x "$custom" ]; then
        "$custom" set_wlan "$wifi_ssid" "$wifi_key" "$wifi_country"
    else
        connection=/etc/NetworkManager/system-connections/appliance-wifi.nmconnection
        mkdir -p "$(dirname "$connection")"
        umask 077
        {
            printf '[connection]\nid=appliance-wifi\ntype=wifi\nautoconnect=true\n\n'
            printf '[wifi]\nmode=infrastructure\nssid=%s\n\n' "$wifi_ssid"
            printf '[wifi-security]\nkey-mgmt=wpa-psk\npsk=%s\n\n' "$wifi_key"
            printf '[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n'
        } >"$connection"
        chmod 0600 "$connection"
        umask 022
        if command -v raspi-config >/dev/null 2>&1; then
            raspi-config nonint do_wifi_country "$wifi_country"
        fi
    fi
fi

# The appliance: files, user, unit and key now; packages on the next boot.
bash "$payload/install-on-pi.sh" --defer-deps

# Never again: remove this script and its cmdline.txt hook.
rm -f "$boot/firstrun.sh"
sed -i 's| systemd\.run=[^ ]*firstrun\.sh systemd\.run_success_action=reboot systemd\.unit=kernel-command-line\.target||' "$boot/cmdline.txt"
exit 0
EOF
    } >"$BOOT/firstrun.sh"
}

hook_cmdline() {
    local cmdline=$BOOT/cmdline.txt hook
    hook=" systemd.run=/boot/firmware/firstrun.sh $RUN_HOOK_TAIL"
    if grep -q 'systemd\.run=[^ ]*/firstrun\.sh' "$cmdline"; then
        return 0          # ours from an earlier run, or Imager's (which now runs ours' chain)
    fi
    if grep -q 'systemd\.run=' "$cmdline"; then
        die "cmdline.txt already runs another first-boot script (systemd.run=); flash the card again"
    fi
    # cmdline.txt is one line; the hook goes at its end.
    local line
    line=$(head -n 1 "$cmdline")
    line=${line%$'\r'}
    printf '%s%s\n' "$line" "$hook" >"$cmdline"
}

backup_once() {
    local file=$BOOT/$1
    [ -f "$file" ] || return 0
    grep -q "provision-image.sh" "$file" && return 0
    [ -e "$file.before-appliance" ] || cp -p "$file" "$file.before-appliance"
}

main() {
    parse_args "$@"
    [ -d "$BOOT" ] || die "--boot $BOOT is not a directory"
    if [ ! -f "$BOOT/cmdline.txt" ] || [ ! -f "$BOOT/config.txt" ]; then
        die "$BOOT has no cmdline.txt and config.txt: give the mounted boot partition of the card"
    fi
    if [ -z "$SOURCE" ]; then
        SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
    fi
    if [ ! -f "$SOURCE/scripts/install.sh" ] || [ ! -f "$SOURCE/pyproject.toml" ]; then
        die "$SOURCE is not the appliance source; use --source DIR"
    fi
    check_hat
    read_ssh_keys
    read_wifi
    check_api_key
    if [ "$METHOD" = auto ]; then
        # A card provisioned before keeps its method; our own files would mislead the guess.
        METHOD=$(cat "$BOOT/appliance/method" 2>/dev/null || true)
        case "$METHOD" in cloud-init|firstrun) ;; *)
            METHOD=firstrun
            if [ -f "$BOOT/user-data" ] || [ -f "$BOOT/meta-data" ] || [ -f "$BOOT/network-config" ]; then
                METHOD=cloud-init
            fi ;;
        esac
    fi

    umask 077
    mkdir -p "$BOOT/appliance"
    copy_source
    if [ -n "$API_KEY_FILE" ]; then
        # Checked above: one word, maybe with blank lines around it.
        tr -d '[:space:]' <"$API_KEY_FILE" >"$BOOT/appliance/api-key"
        printf '\n' >>"$BOOT/appliance/api-key"
    else
        rm -f "$BOOT/appliance/api-key"
    fi
    write_install_on_pi
    printf '%s\n' "$METHOD" >"$BOOT/appliance/method"
    backup_once user-data
    backup_once network-config
    write_user_data
    if [ "$METHOD" = cloud-init ]; then
        # Only cloud-init reads these; firstrun.sh carries the derived Wi-Fi key itself.
        write_network_config
        write_meta_data
    fi
    if [ -f "$BOOT/firstrun.sh" ] && ! grep -q "provision-image.sh" "$BOOT/firstrun.sh"; then
        # Raspberry Pi Imager's settings: kept, and run first by ours.
        mv "$BOOT/firstrun.sh" "$BOOT/appliance/imager-firstrun.sh"
        say "kept Raspberry Pi Imager's firstrun.sh; it runs before the appliance's"
    fi
    write_firstrun
    if [ "$METHOD" = firstrun ]; then
        hook_cmdline
        say "cmdline.txt runs firstrun.sh on the first boot (Bookworm)"
    else
        say "cloud-init runs user-data on the first boot (Trixie)"
    fi
    sync
    say "done: eject the card, put it in the Pi and power it on."
    say "the first boot takes several minutes; then: ssh $LOGIN_USER@$HOST_NAME.local, sudo appliance doctor"
    if [ -n "$API_KEY_FILE" ] || [ -n "$WIFI_SSID" ]; then
        say "until that boot, the card holds the API key and Wi-Fi key in plain text (see --help)"
    fi
}

main "$@"
