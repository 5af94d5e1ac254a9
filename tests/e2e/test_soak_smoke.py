"""scripts/soak.py still runs: four turns, in a subprocess, end to end.

A smoke test that keeps the script working (the daemon, the emulator and the virtual sound card as the
soak wires them), not a performance assertion: the soak's own acceptance block decides the exit code,
and four fault-light turns of seed 1 must pass it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "scripts" / "soak.py"

HEADINGS = ("appliance soak: seed 1", "\nturns\n", "\nfaults injected\n", "\nresources ", "\nacceptance\n",
            "utterances that reached the emulator whole", "replies played", "lost questions",
            "RSS growth in the second half", "overall: ")


@pytest.mark.timeout(600)
def test_a_short_soak_runs_and_passes():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_", "GPIOZERO_"))}
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--turns", "4", "--seed", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=540,
    )
    out = proc.stdout
    for heading in HEADINGS:
        assert heading in out, f"{heading!r} missing from the soak's table:\n{out}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"the soak failed:\n{out}\n{proc.stderr[-3000:]}"
    assert "overall: PASS" in out
