"""scripts/install.sh into an image root (--root) and scripts/provision-image.sh onto a boot partition.

The installer runs for real, as whoever runs the tests, against a skeleton of a Raspberry
Pi OS root file system in a temporary directory: Debian's static groups (including `voice`),
a `pi` user, a boot partition with config.txt.  `--skip-deps` keeps apt and pip out; `--root`
implies no systemctl.  A stand-in `i2cdetect` on PATH decides what the "I2C bus" shows.
As root the files get their real owners; as a normal user (a tree of their own needs no
sudo) they stay that user's, which `owned()` expects.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.settings.loader import load_config

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install.sh"
PROVISION = REPO / "scripts" / "provision-image.sh"
# built in two parts so that no file holds something shaped like a real key
KEY = "AI" + "zaTestKeyForTheInstallerOnly0123456789"
STDIN_KEY = "AI" + "zaAnotherKeyFromStdin0123456789abcd"

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
systemd-timesync:x:997:997:systemd Time Synchronization:/:/usr/sbin/nologin
pi:x:1000:1000:,,,:/home/pi:/bin/bash
"""
GROUP = """root:x:0:
voice:x:22:
audio:x:29:pi
systemd-timesync:x:997:
gpio:x:993:pi
pi:x:1000:
"""
SHADOW = "root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n"
GSHADOW = "root:*::\nvoice:*::\naudio:*::pi\ngpio:!::pi\n"
CONFIG_TXT = "# For more options see the Raspberry Pi documentation\ndtparam=audio=on\n\n[cm4]\notg_mode=1\n"


AS_ROOT = os.geteuid() == 0
#: who a normal user is when the tests run as root
NOBODY = 65534


def owned(uid: int = 0, gid: int = 0) -> tuple[int, int]:
    """The owner the installer gives a file: the one asked for as root, else the user running it."""
    return (uid, gid) if AS_ROOT else (os.getuid(), os.getgid())


def i2c_grid(cells: dict[int, str]) -> str:
    """What `i2cdetect -y 1` prints, with the given addresses of row 0x10 answering."""
    rows = ["     0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f"]
    for base in range(0, 0x80, 0x10):
        row = [cells.get(base + i, "--") if base == 0x10 else "--" for i in range(16)]
        rows.append(f"{base:02x}: " + " ".join(row))
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("install")


def make_root(path: Path) -> Path:
    (path / "etc").mkdir(parents=True)
    (path / "boot" / "firmware").mkdir(parents=True)
    (path / "etc" / "passwd").write_text(PASSWD)
    (path / "etc" / "group").write_text(GROUP)
    for name, text in (("shadow", SHADOW), ("gshadow", GSHADOW)):
        (path / "etc" / name).write_text(text)
        (path / "etc" / name).chmod(0o640)
    (path / "boot" / "firmware" / "config.txt").write_text(CONFIG_TXT)
    return path


def fake_bin(path: Path, i2c_output: str | None) -> Path:
    """A PATH directory whose i2cdetect prints `i2c_output`, or fails like a Pi with I2C off."""
    path.mkdir(parents=True, exist_ok=True)
    script = path / "i2cdetect"
    if i2c_output is None:
        script.write_text("#!/bin/sh\necho 'Error: Could not open file /dev/i2c-1' >&2\nexit 1\n")
    else:
        (path / "grid.txt").write_text(i2c_output)
        script.write_text(f"#!/bin/sh\ncat '{path / 'grid.txt'}'\n")
    script.chmod(0o755)
    return path


def run(script: Path, *args: str, bin_dir: Path | None = None, stdin: str | None = None,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["PYTHON"] = sys.executable
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra_env or {})
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=env,
                          input=stdin, timeout=60)


def install(root: Path, *args: str, hat: str | None = "respeaker-2mic", key_file: Path | None = None,
            bin_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["--root", str(root), "--non-interactive", "--skip-deps"]
    if key_file is not None:
        argv += ["--api-key-file", str(key_file)]
    if hat is not None:
        argv += ["--hat", hat]
    result = run(INSTALL, *argv, *args, bin_dir=bin_dir or fake_bin(root.parent / "bin", None))
    assert KEY not in result.stdout + result.stderr, "the installer printed the API key"
    return result


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner and content hash (or link target)."""
    seen: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            seen[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            seen[rel] = ("dir", stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            seen[rel] = ("file", stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, digest)
    return seen


def colon_file(root: Path, name: str) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in (root / "etc" / name).read_text().splitlines()}


def mode_owner(path: Path) -> tuple[int, int, int]:
    info = path.lstat()
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def boot_block(root: Path) -> list[str]:
    text = (root / "boot" / "firmware" / "config.txt").read_text()
    assert text.count("# >>> appliance") == 1 and text.count("# <<< appliance") == 1, text
    block = text.split("# >>> appliance", 1)[1].split("# <<< appliance", 1)[0]
    return [line for line in block.splitlines()[1:] if line]


@pytest.fixture(scope="module")
def key_file(module_tmp: Path) -> Path:
    path = module_tmp / "gemini-key.txt"
    path.write_text(KEY + "\n")
    return path


@pytest.fixture(scope="module")
def installed(module_tmp: Path, key_file: Path) -> Path:
    """One install with a ReSpeaker and a key; tests that change it work on a copy."""
    root = make_root(module_tmp / "image" / "root")
    result = install(root, key_file=key_file)
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def copy_of_installed(installed: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(installed), str(root)], check=True)   # keeps owners, unlike copytree
    return root


# --------------------------------------------------------------------------- the layout


def test_root_install_lays_out_the_program_and_unit(installed: Path) -> None:
    unit = installed / "etc/systemd/system/appliance.service"
    assert unit.read_bytes() == (REPO / "systemd/appliance.service").read_bytes()
    assert mode_owner(unit) == (0o644, *owned())
    wants = installed / "etc/systemd/system/multi-user.target.wants"
    assert os.readlink(wants / "appliance.service") == "/etc/systemd/system/appliance.service"

    # The image has no venv yet: a first-boot unit builds it on the Pi, from the copied source.
    firstboot = installed / "etc/systemd/system/appliance-firstboot.service"
    assert os.readlink(wants / "appliance-firstboot.service") == "/etc/systemd/system/appliance-firstboot.service"
    exec_start = re.search(r"^ExecStart=(\S+)", firstboot.read_text(), re.M)
    assert exec_start and exec_start.group(1) == "/opt/appliance/src/scripts/install.sh"
    assert "ConditionPathExists=!/opt/appliance/venv/bin/appliance" in firstboot.read_text()

    src = installed / "opt/appliance/src"
    assert mode_owner(src / "scripts/install.sh") == (0o755, *owned())
    assert mode_owner(src / "appliance/cli.py") == (0o644, *owned())
    assert (src / "pyproject.toml").read_bytes() == (REPO / "pyproject.toml").read_bytes()
    assert not list(src.rglob("__pycache__"))
    assert os.readlink(installed / "usr/local/bin/appliance") == "/opt/appliance/venv/bin/appliance"


def test_root_install_creates_the_service_user_in_the_image(installed: Path) -> None:
    passwd = colon_file(installed, "passwd")
    group = colon_file(installed, "group")
    user = passwd["appliance"]
    uid, gid = int(user[2]), int(user[3])
    assert 100 <= uid < 1000 and uid not in (0, 997, 1000)
    assert user[5:] == ["/var/lib/appliance", "/usr/sbin/nologin"]
    assert group["appliance"][2] == str(gid)
    for name in ("audio", "gpio", "spi"):
        assert "appliance" in group[name][3].split(","), name
        assert "appliance" in colon_file(installed, "gshadow")[name][3].split(","), name
    assert group["audio"][3].split(",") == ["pi", "appliance"]     # the owner's membership kept
    assert group["audio"][2] == "29" and group["gpio"][2] == "993"  # existing groups untouched
    assert group["voice"] == ["voice", "x", "22", ""]
    assert colon_file(installed, "shadow")["appliance"][1].startswith("!")  # no password login
    assert mode_owner(installed / "etc/shadow")[0] == 0o640

    state = installed / "var/lib/appliance"
    assert mode_owner(state) == (0o750, *owned(uid, gid))   # numeric ids of the image, not this machine's


def test_root_install_writes_key_root_only(installed: Path) -> None:
    key = installed / "etc/appliance/gemini-api-key"
    assert key.read_text().strip() == KEY
    assert mode_owner(key) == (0o600, *owned())
    assert mode_owner(installed / "etc/appliance") == (0o755, *owned())


def test_root_install_config_loads_with_the_hats_settings(installed: Path) -> None:
    path = installed / "etc/appliance/config.toml"
    assert mode_owner(path) == (0o644, *owned())
    cfg = load_config(str(path), env={})
    assert (cfg.audio.input_device, cfg.audio.output_device) == ("wm8960", "wm8960")
    assert (cfg.audio.input_rate, cfg.audio.output_rate) == (48000, 48000)  # WM8960: one rate both ways
    assert (cfg.audio.input_channels, cfg.audio.input_channel, cfg.audio.input_format) == (2, -1, "int16")
    assert (cfg.button.enabled, cfg.button.pin) == (True, 17)
    # the HAT's three APA102s, on hardware SPI0 as /dev/spidev0.1
    assert (cfg.leds.kind, cfg.leds.count, cfg.leds.spi_bus, cfg.leds.spi_device) == ("apa102", 3, 0, 1)
    assert (cfg.leds.data_pin, cfg.leds.clock_pin) == (-1, -1)
    assert cfg.control.socket == "/run/appliance/control.sock"
    # Everything else stays the commented template, at the defaults.
    text = path.read_text()
    assert '#model = "gemini-3.8-live"' in text
    assert cfg.live.model == "gemini-3.8-live"


def test_root_install_writes_the_overlay_block_with_a_backup(installed: Path) -> None:
    assert boot_block(installed) == ["[all]", "dtparam=i2s=on", "dtparam=spi=on", "dtoverlay=wm8960-soundcard"]
    text = (installed / "boot/firmware/config.txt").read_text()
    assert text.startswith(CONFIG_TXT)          # the owner's lines are untouched
    assert (installed / "boot/firmware/config.txt.appliance-backup").read_text() == CONFIG_TXT


def test_a_second_identical_run_changes_nothing(copy_of_installed: Path, key_file: Path) -> None:
    before = snapshot(copy_of_installed)
    result = install(copy_of_installed, key_file=key_file)
    assert result.returncode == 0, result.stderr
    assert snapshot(copy_of_installed) == before
    # and an upgrade run without --hat or key changes nothing either
    result = install(copy_of_installed, hat=None)
    assert result.returncode == 0, result.stderr
    assert snapshot(copy_of_installed) == before


def test_the_owners_config_edits_survive_a_rerun(copy_of_installed: Path, key_file: Path) -> None:
    path = copy_of_installed / "etc/appliance/config.toml"
    edited = path.read_text().replace('#voice = "Kore"', 'voice = "Puck"')
    edited = edited.replace("pin = 17  # set by install.sh", "pin = 27  # mine")
    path.write_text(edited)

    assert install(copy_of_installed, hat=None).returncode == 0
    assert path.read_text() == edited, "a run without --hat must not touch the config"

    # --hat again rewrites that hardware's keys, and only those.
    assert install(copy_of_installed, key_file=key_file).returncode == 0
    cfg = load_config(str(path), env={})
    assert cfg.live.voice == "Puck"
    assert cfg.button.pin == 17


def test_switching_hats_replaces_the_block_and_keys(copy_of_installed: Path) -> None:
    result = install(copy_of_installed, hat="voicehat")
    assert result.returncode == 0, result.stderr
    assert boot_block(copy_of_installed) == ["[all]", "dtparam=i2s=on", "dtoverlay=googlevoicehat-soundcard"]
    cfg = load_config(str(copy_of_installed / "etc/appliance/config.toml"), env={})
    assert (cfg.audio.input_device, cfg.audio.input_format, cfg.audio.input_rate) == ("googlevoicehat", "int32", 48000)
    assert (cfg.button.pin, cfg.leds.kind, cfg.leds.pin) == (23, "pwm", 25)
    # The backup is the card's original file, made once.
    backup = copy_of_installed / "boot/firmware/config.txt.appliance-backup"
    assert backup.read_text() == CONFIG_TXT

    result = install(copy_of_installed, hat="usb")
    assert result.returncode == 0, result.stderr
    text = (copy_of_installed / "boot/firmware/config.txt").read_text()
    assert "appliance" not in text and text.rstrip("\n") == CONFIG_TXT.rstrip("\n")
    cfg = load_config(str(copy_of_installed / "etc/appliance/config.toml"), env={})
    assert cfg.audio.input_device == "USB" and cfg.audio.input_rate == 0


@pytest.mark.parametrize(
    ("cells", "overlay", "device"),
    [
        ({0x1A: "1a"}, "dtoverlay=wm8960-soundcard", "wm8960"),
        ({0x1A: "UU"}, "dtoverlay=wm8960-soundcard", "wm8960"),          # driver already bound
        ({0x18: "18", 0x1B: "1b"}, "dtoverlay=respeaker-2mic-v2_0-overlay", "seeed2micvoicec"),
    ],
)
def test_respeaker_revision_comes_from_the_codecs_i2c_address(
    tmp_path: Path, cells: dict[int, str], overlay: str, device: str
) -> None:
    root = make_root(tmp_path / "root")
    result = install(root, bin_dir=fake_bin(tmp_path / "bin", i2c_grid(cells)))
    assert result.returncode == 0, result.stderr
    assert overlay in boot_block(root)
    assert load_config(str(root / "etc/appliance/config.toml"), env={}).audio.input_device == device
    firstboot = (root / "etc/systemd/system/appliance-firstboot.service").read_text()
    assert "--hat" not in firstboot, "a detected revision needs no second look on the Pi"
    if "v2_0" in overlay:
        assert "overlay is not in the Raspberry Pi kernel" in result.stderr   # how to build it


def test_unknown_respeaker_revision_assumes_v1_and_looks_again_on_first_boot(installed: Path) -> None:
    firstboot = (installed / "etc/systemd/system/appliance-firstboot.service").read_text()
    assert re.search(r"^ExecStart=\S+install\.sh --firstboot --hat respeaker-2mic$", firstboot, re.M)


@pytest.mark.parametrize("hat", ["respeaker-2mic-v2", "voice-bonnet", "usb", "i2s-inmp441-max98357a"])
def test_every_hats_config_loads(tmp_path: Path, hat: str) -> None:
    root = make_root(tmp_path / "root")
    result = install(root, hat=hat)
    assert result.returncode == 0, result.stderr
    cfg = load_config(str(root / "etc/appliance/config.toml"), env={})
    expected = {
        "respeaker-2mic-v2": ("seeed2micvoicec", 17, "apa102"),
        "voice-bonnet": ("wm8960", 17, "apa102"),
        "usb": ("USB", 17, "pwm"),
        "i2s-inmp441-max98357a": ("googlevoicehat", 17, "pwm"),
    }[hat]
    assert (cfg.audio.input_device, cfg.button.pin, cfg.leds.kind) == expected
    if hat == "i2s-inmp441-max98357a":
        assert boot_block(root) == ["[all]", "dtparam=i2s=on", "dtoverlay=googlevoicehat-soundcard"]
        assert (cfg.audio.input_format, cfg.audio.input_channel, cfg.leds.pin) == ("int32", 0, 12)
    if hat == "voice-bonnet":
        assert "dtparam=spi=on" not in boot_block(root)   # its LEDs are bit-banged, not SPI
        assert (cfg.leds.data_pin, cfg.leds.clock_pin, cfg.leds.count) == (5, 6, 3)
    if hat == "respeaker-2mic-v2":
        assert "dtparam=spi=on" in boot_block(root)       # its LEDs are on SPI0
        assert (cfg.leds.data_pin, cfg.leds.clock_pin, cfg.leds.spi_device) == (-1, -1, 1)
    if hat in ("respeaker-2mic-v2", "voice-bonnet"):
        assert "not driven" not in result.stdout and "leds.kind = apa102" in result.stdout


def test_switching_hats_leaves_no_led_strip_pins_behind(copy_of_installed: Path) -> None:
    config = copy_of_installed / "etc/appliance/config.toml"
    assert install(copy_of_installed, hat="voice-bonnet").returncode == 0
    bonnet = load_config(str(config), env={}).leds
    assert (bonnet.kind, bonnet.data_pin, bonnet.clock_pin) == ("apa102", 5, 6)
    assert install(copy_of_installed, hat="respeaker-2mic-v1").returncode == 0
    respeaker = load_config(str(config), env={}).leds
    assert (respeaker.kind, respeaker.data_pin, respeaker.clock_pin) == ("apa102", -1, -1)
    assert config.read_text().count("data_pin =") == 1, "one line per key, rewritten in place"


# --------------------------------------------------------------------------- the key


def test_key_from_standard_input_and_replaced_by_a_new_one(copy_of_installed: Path) -> None:
    result = run(INSTALL, "--root", str(copy_of_installed), "--skip-deps", "--api-key-file", "-",
                 stdin="  " + STDIN_KEY + " \n", bin_dir=fake_bin(copy_of_installed.parent / "bin", None))
    assert result.returncode == 0, result.stderr
    key = copy_of_installed / "etc/appliance/gemini-api-key"
    assert key.read_text() == STDIN_KEY + "\n"
    assert mode_owner(key) == (0o600, *owned())
    assert "AIzaAnother" not in result.stdout + result.stderr


def test_a_bad_key_file_is_refused_without_showing_the_key(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    bad = tmp_path / "bad-key.txt"
    bad.write_text("AIzaSecretPart one two\n")
    result = install(root, key_file=bad)
    assert result.returncode == 1
    assert "one line with no spaces" in result.stderr
    assert "AIzaSecretPart" not in result.stdout + result.stderr
    assert not (root / "etc/appliance/gemini-api-key").exists()


def test_without_a_key_the_install_says_where_it_goes(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    result = install(root, hat=None)
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/appliance/gemini-api-key").exists()
    assert "/etc/appliance/gemini-api-key" in result.stdout + result.stderr


# --------------------------------------------------------------------------- uninstall


def test_uninstall_keeps_the_owners_data_and_purge_removes_it(copy_of_installed: Path) -> None:
    root = copy_of_installed
    config_before = (root / "etc/appliance/config.toml").read_bytes()
    (root / "var/lib/appliance/timers.json").write_text("[]")
    result = run(INSTALL, "--root", str(root), "--uninstall")
    assert result.returncode == 0, result.stderr
    for gone in ("opt/appliance", "etc/systemd/system/appliance.service",
                 "etc/systemd/system/multi-user.target.wants/appliance.service",
                 "etc/systemd/system/appliance-firstboot.service", "usr/local/bin/appliance"):
        assert not os.path.lexists(root / gone), gone
    assert (root / "etc/appliance/config.toml").read_bytes() == config_before
    assert (root / "etc/appliance/gemini-api-key").read_text().strip() == KEY
    assert (root / "var/lib/appliance/timers.json").exists()
    assert "appliance" in colon_file(root, "passwd")   # it still owns the state

    result = run(INSTALL, "--root", str(root), "--uninstall", "--purge")
    assert result.returncode == 0, result.stderr
    for gone in ("etc/appliance", "var/lib/appliance", "boot/firmware/config.txt.appliance-backup"):
        assert not os.path.lexists(root / gone), gone
    assert (root / "boot/firmware/config.txt").read_text() == CONFIG_TXT
    assert (root / "etc/passwd").read_text() == PASSWD
    assert "appliance" not in (root / "etc/group").read_text().replace("spi", "")
    assert colon_file(root, "group")["audio"] == ["audio", "x", "29", "pi"]


# --------------------------------------------------------------------------- bad usage


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--frobnicate"], "unknown option '--frobnicate'"),
        (["--hat", "respeaker-4mic"], "unknown --hat 'respeaker-4mic'"),
        (["--purge"], "--purge only goes with --uninstall"),
        (["--hat"], "--hat needs a value"),
        (["--uninstall", "--hat", "usb"], "--uninstall takes no --hat"),
    ],
)
def test_bad_usage_is_one_clear_line_and_exit_2(args: list[str], says: str) -> None:
    result = run(INSTALL, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_root_must_be_an_os_root(tmp_path: Path) -> None:
    result = run(INSTALL, "--root", str(tmp_path), "--non-interactive", "--skip-deps")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "etc/passwd" in result.stderr


# --------------------------------------------------------------------------- without sudo


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user may enter (pytest's own are private to whoever runs the tests)."""
    with tempfile.TemporaryDirectory(prefix="install-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


def run_as_normal_user(open_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """install.sh as a normal user: the one running the tests, or `nobody` when that is root.

    A copy of the script is run, from where `nobody` can read it: these runs end before
    the source is needed."""
    script = open_dir / "install.sh"
    shutil.copy(INSTALL, script)
    if not AS_ROOT:
        return run(script, *args)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the installer as a normal user"
    return run(Path(setpriv), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", str(script), *args)


def test_without_sudo_this_machine_is_refused(open_dir: Path) -> None:
    result = run_as_normal_user(open_dir, "--non-interactive", "--skip-deps")
    assert result.returncode == 1
    assert result.stderr.startswith("install.sh: run as root: sudo ") and result.stderr.count("\n") == 1, result.stderr


def test_without_sudo_a_tree_you_cannot_write_is_refused_in_one_line(open_dir: Path) -> None:
    root = make_root(open_dir / "root")
    (root / "etc").chmod(0o555)
    try:
        result = run_as_normal_user(open_dir, "--root", str(root), "--non-interactive", "--skip-deps")
    finally:
        (root / "etc").chmod(0o755)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "/etc is not writable by " in lines[0] and "sudo" in lines[0], result.stderr
    assert not (root / "etc/appliance").exists()


def test_the_install_says_when_the_files_keep_their_makers_owner(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    result = install(root, hat=None)
    assert result.returncode == 0, result.stderr
    assert ("Laid out without sudo" in result.stdout) == (not AS_ROOT), result.stdout
    assert mode_owner(root / "etc/appliance/config.toml")[1:] == owned()


def test_help_lists_every_option() -> None:
    result = run(INSTALL, "--help")
    assert result.returncode == 0
    for option in ("--hat", "--api-key-file", "--non-interactive", "--root", "--source", "--skip-deps",
                   "--uninstall", "--purge", "respeaker-2mic", "voicehat", "voice-bonnet", "usb",
                   "i2s-inmp441-max98357a"):
        assert option in result.stdout, option


# --------------------------------------------------------------------------- provision-image.sh


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    path = tmp_path / "bootfs"
    path.mkdir()
    (path / "cmdline.txt").write_text("console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootwait\n")
    (path / "config.txt").write_text(CONFIG_TXT)
    return path


@pytest.fixture
def owner_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "ssh": tmp_path / "id_ed25519.pub",
        "psk": tmp_path / "wifi.txt",
        "key": tmp_path / "gemini-key.txt",
    }
    files["ssh"].write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkNd5kEXAMPLEonlyKEYfortests me@laptop\n")
    files["psk"].write_text("password\n")
    files["key"].write_text(KEY + "\n")
    return files


def provision(boot: Path, files: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    result = run(PROVISION, "--boot", str(boot), "--ssh-key-file", str(files["ssh"]),
                 "--wifi-ssid", "IEEE", "--wifi-psk-file", str(files["psk"]), "--wifi-country", "gb",
                 "--api-key-file", str(files["key"]), "--hat", "voicehat", "--hostname", "kitchen", *extra)
    assert KEY not in result.stdout + result.stderr
    return result


def check_cloud_config(text: str) -> dict[str, str]:
    """A structural check of the YAML we write (PyYAML is not a dependency): the header,
    spaces only, known top-level keys, and double-quoted scalars that are well formed."""
    lines = text.splitlines()
    assert lines[0] == "#cloud-config"
    assert "\t" not in text
    top = {}
    for line in lines:
        if not line or line.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, line
        if indent == 0:
            key, sep, value = line.partition(":")
            assert sep, line
            top[key] = value.strip()
        for quoted in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
            assert not re.search(r'(?<!\\)"', quoted)
    assert set(top) <= {"hostname", "manage_etc_hosts", "ssh_pwauth", "users", "runcmd", "power_state"}, top
    return top


def test_provision_writes_cloud_init_and_firstrun(boot: Path, owner_files: dict[str, Path]) -> None:
    result = provision(boot, owner_files)
    assert result.returncode == 0, result.stderr

    user_data = (boot / "user-data").read_text()
    top = check_cloud_config(user_data)
    assert top["hostname"] == '"kitchen"' and top["ssh_pwauth"] == "false"
    assert '- "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkNd5kEXAMPLEonlyKEYfortests me@laptop"' in user_data
    assert "- [bash, /boot/firmware/appliance/install-on-pi.sh]" in user_data
    assert "condition: [test, -e, /run/appliance-reboot-needed]" in user_data   # reboot for the overlay
    assert KEY not in user_data and "password" not in user_data.replace("ssh_pwauth", "")

    # Bookworm's firstrun.sh carries the Wi-Fi key; no plain passphrase is left on the card.
    assert not (boot / "network-config").exists() and not (boot / "meta-data").exists()

    # The key travels in its own file, moved off the card by the first boot.
    assert (boot / "appliance/api-key").read_text().strip() == KEY
    assert (boot / "appliance/src/scripts/install.sh").read_bytes() == INSTALL.read_bytes()
    assert not list((boot / "appliance/src").rglob("__pycache__"))
    installer = (boot / "appliance/install-on-pi.sh").read_text()
    assert "hat=voicehat" in installer and 'rm -f "$here/api-key"' in installer

    firstrun = boot / "firstrun.sh"
    generated = [str(firstrun), str(boot / "appliance/install-on-pi.sh")]
    for script in generated:
        check = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: apt-get install shellcheck"
    check = subprocess.run([shellcheck, *generated], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    # Bookworm's firstrun.sh gets the WPA key derived from passphrase and SSID, not the
    # passphrase (the IEEE 802.11i test vector: "password" on SSID "IEEE").
    assert "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e" in firstrun.read_text()
    assert "wifi_key=password" not in firstrun.read_text()

    # No cloud-init files on this card: Bookworm's firstrun.sh is hooked into cmdline.txt, once.
    assert provision(boot, owner_files).returncode == 0
    cmdline = (boot / "cmdline.txt").read_text()
    assert cmdline.count("systemd.run=/boot/firmware/firstrun.sh") == 1
    assert cmdline.startswith("console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootwait ")
    assert len(cmdline.splitlines()) == 1


def test_provision_on_a_cloud_init_card_leaves_cmdline_alone(boot: Path, owner_files: dict[str, Path]) -> None:
    (boot / "user-data").write_text("#cloud-config\n# written by Raspberry Pi Imager\nhostname: other\n")
    (boot / "meta-data").write_text("dsmode: local\ninstance-id: rpios-image\n")
    result = provision(boot, owner_files)
    assert result.returncode == 0, result.stderr
    assert "systemd.run" not in (boot / "cmdline.txt").read_text()
    assert (boot / "user-data.before-appliance").read_text().endswith("hostname: other\n")
    assert (boot / "meta-data").read_text() == "dsmode: local\ninstance-id: rpios-image\n"
    check_cloud_config((boot / "user-data").read_text())
    network = (boot / "network-config").read_text()
    assert 'regulatory-domain: "GB"' in network and '"IEEE":' in network
    assert re.search(r'^        "IEEE":\n          password: "password"$', network, re.M)


def test_provision_keeps_and_chains_imagers_firstrun(boot: Path, owner_files: dict[str, Path]) -> None:
    (boot / "firstrun.sh").write_text("#!/bin/bash\n# Imager's\nexit 0\n")
    with (boot / "cmdline.txt").open("r+") as handle:
        line = handle.read().rstrip("\n")
        handle.seek(0)
        handle.write(line + " systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
                            "systemd.unit=kernel-command-line.target\n")
    result = provision(boot, owner_files)
    assert result.returncode == 0, result.stderr
    assert (boot / "appliance/imager-firstrun.sh").read_text().startswith("#!/bin/bash\n# Imager's")
    assert 'bash "$payload/imager-firstrun.sh"' in (boot / "firstrun.sh").read_text()
    assert (boot / "cmdline.txt").read_text().count("systemd.run=") == 1


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda f: f["ssh"].write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"), "private key"),
        (lambda f: f["psk"].write_text("short\n"), "8 to 63 characters"),
        (lambda f: f["key"].write_text("\n"), "is empty"),
    ],
)
def test_provision_refuses_bad_inputs_in_one_line(
    boot: Path, owner_files: dict[str, Path], change: Callable[[dict[str, Path]], object], says: str
) -> None:
    change(owner_files)
    result = provision(boot, owner_files)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr
    assert not (boot / "appliance").exists() and not (boot / "user-data").exists()


def test_provision_usage_errors(boot: Path, owner_files: dict[str, Path]) -> None:
    result = run(PROVISION, "--boot", str(boot))
    assert result.returncode == 2 and "--ssh-key-file is required" in result.stderr
    result = run(PROVISION, "--boot", str(boot), "--ssh-key-file", str(owner_files["ssh"]), "--wifi-ssid", "Home",
                 "--wifi-psk-file", str(owner_files["psk"]))
    assert result.returncode == 2 and "--wifi-country" in result.stderr
    result = provision(boot, owner_files, "--hat", "nonsense")
    assert result.returncode == 2 and "unknown --hat 'nonsense'" in result.stderr
    result = run(PROVISION, "--boot", str(boot.parent), "--ssh-key-file", str(owner_files["ssh"]))
    assert result.returncode == 1 and "boot partition" in result.stderr
