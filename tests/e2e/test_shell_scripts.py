"""Every shell script in the repository passes shellcheck (Debian package `shellcheck`).

A missing shellcheck is a failure, not a skip: CI must install it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    try:
        first = path.read_bytes()[:128].split(b"\n", 1)[0]
    except OSError:
        return False
    return first.startswith(b"#!") and any(shell in first for shell in (b"bash", b"/sh", b"env sh"))


def shell_scripts() -> list[Path]:
    found = []
    for folder in ("scripts", ".ci"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and _is_shell_script(path):
                found.append(path)
    return found


def _shellcheck() -> str:
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is missing: apt-get install shellcheck"
    return exe


def test_the_known_scripts_are_found() -> None:
    names = {str(p.relative_to(REPO)) for p in shell_scripts()}
    assert {"scripts/install.sh", "scripts/provision-image.sh", "scripts/bootstrap.sh", ".ci/run"} <= names
    assert not any(name.endswith(".py") for name in names)


def test_shellcheck_is_clean_on_every_script() -> None:
    scripts = shell_scripts()
    result = subprocess.run(
        [_shellcheck(), "--external-sources", "--format=gcc", *map(str, scripts)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_really_reports_problems(tmp_path: Path) -> None:
    """The gate above can fail: an unquoted variable is reported."""
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $1/data\n")
    result = subprocess.run([_shellcheck(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_scripts_are_executable() -> None:
    for path in shell_scripts():
        assert path.stat().st_mode & 0o111, f"{path.relative_to(REPO)} is not executable (chmod +x)"
