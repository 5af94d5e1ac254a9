"""The /tmp fallback for the control socket directory: private, or refused in one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.settings import paths
from appliance.cli import main
from appliance.settings.paths import control_socket_path, secure_control_socket_path
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config

NO_RUNTIME: dict[str, str] = {}  # neither RUNTIME_DIRECTORY nor XDG_RUNTIME_DIR


@pytest.fixture
def fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory the fallback would use, moved under tmp_path (a stand-in for /tmp)."""
    parent = tmp_path / "tmp"
    parent.mkdir()
    parent.chmod(0o1777)
    monkeypatch.setattr(paths, "RUNTIME_FALLBACK_PARENT", str(parent))
    return parent / f"appliance-{os.getuid()}"


def test_a_missing_fallback_directory_is_created_private(fallback: Path) -> None:
    old_umask = os.umask(0)  # even a careless umask must not make it shared
    try:
        path = secure_control_socket_path(Config(), NO_RUNTIME)
    finally:
        os.umask(old_umask)
    assert path == fallback / "appliance" / "control.sock"
    info = os.lstat(fallback)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == os.geteuid()


def test_a_private_fallback_directory_of_ours_is_used_as_it_is(fallback: Path) -> None:
    fallback.mkdir(mode=0o700)
    (fallback / "appliance").mkdir()
    assert secure_control_socket_path(Config(), NO_RUNTIME) == fallback / "appliance" / "control.sock"
    assert stat.S_IMODE(os.lstat(fallback).st_mode) == 0o700


@pytest.mark.parametrize("case", ["open mode", "other owner"])
def test_a_fallback_directory_others_could_control_is_refused(fallback: Path, case: str) -> None:
    fallback.mkdir(mode=0o700)
    if case == "open mode":
        fallback.chmod(0o777)
        expected = "has mode 0777, open to other users"
    elif os.geteuid() == 0:
        os.chown(fallback, 65534, 65534)
        expected = "belongs to uid 65534, not to this user"
    else:
        # Without root no directory can be given away; what can be checked is that ours passes.
        assert secure_control_socket_path(Config(), NO_RUNTIME).parent.parent == fallback
        return
    with pytest.raises(ConfigError) as info:
        secure_control_socket_path(Config(), NO_RUNTIME)
    message = str(info.value)
    assert "\n" not in message and str(fallback) in message and expected in message
    assert "set XDG_RUNTIME_DIR or [control] socket" in message
    if case == "open mode":
        assert stat.S_IMODE(os.lstat(fallback).st_mode) == 0o777  # refused, not silently trusted


def test_a_symlink_in_place_of_the_fallback_directory_is_refused(fallback: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    fallback.symlink_to(target)
    with pytest.raises(ConfigError, match="is a symlink"):
        secure_control_socket_path(Config(), NO_RUNTIME)


def test_a_file_in_place_of_the_fallback_directory_is_refused(fallback: Path) -> None:
    fallback.write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        secure_control_socket_path(Config(), NO_RUNTIME)


def test_a_runtime_directory_from_the_session_is_not_touched(fallback: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o755)
    path = secure_control_socket_path(Config(), {"XDG_RUNTIME_DIR": str(runtime)})
    assert path == control_socket_path(Config(), {"XDG_RUNTIME_DIR": str(runtime)})
    assert not fallback.exists()
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o755


def test_ctl_refuses_an_open_fallback_directory_in_one_line(
    fallback: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("APPLIANCE_")]:
        monkeypatch.delenv(name)
    fallback.mkdir(mode=0o700)
    fallback.chmod(0o777)
    empty = tmp_path / "config.toml"
    empty.write_text("")

    code = main(["--config", str(empty), "ctl", "status"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "open to other users" in err and "Traceback" not in err
