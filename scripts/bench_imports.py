#!/usr/bin/env python3
"""Where the daemon's start-up memory and CPU go: its imports, step by step, against the reference's.

Each row is a fresh interpreter that imports one more group than the row above it: first what
scripts/reference_client.py imports (asyncio, PyAudio, websockets), then numpy, then the other
runtime dependencies, then the appliance's own modules as `appliance run` loads them. A row
shows the process's peak RSS (VmHWM) and CPU after its imports, and how many dataclasses were
made while importing (Python 3.11-3.13 compile several methods for each, at every start).
Medians of a few runs; the differences between rows are what each group costs.

    .venv/bin/python scripts/bench_imports.py [--times N]

scripts/bench.py prints the same table after its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"

#: (label, modules it adds); each row imports its own and every row's above it
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the reference's imports (asyncio, pyaudio, websockets)", ("asyncio", "pyaudio", "websockets.asyncio.client")),
    ("+ numpy", ("numpy",)),
    ("+ webrtcvad, gpiozero", ("webrtcvad", "gpiozero")),
    ("+ the appliance's modules (`appliance run`)",
     ("appliance.cli", "appliance.app.daemon", "appliance.audio.capture", "appliance.audio.speaker",
      "appliance.tools.catalog")),
)

#: run in each interpreter: count dataclass creation, import, then report
_PROBE = """
import dataclasses, importlib, json, resource, sys, time
made = [0, 0.0]
real = dataclasses._process_class
def counted(*args, **kwargs):
    start = time.process_time()
    try:
        return real(*args, **kwargs)
    finally:
        made[0] += 1
        made[1] += time.process_time() - start
dataclasses._process_class = counted
for name in sys.argv[1:]:
    importlib.import_module(name)
use = resource.getrusage(resource.RUSAGE_SELF)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rss_mb": hwm * 1024 / 1e6, "cpu_s": use.ru_utime + use.ru_stime,
                  "dataclasses": made[0], "dataclass_s": made[1]}))
"""


@dataclass(frozen=True)
class ImportCost:
    label: str
    rss_mb: float
    cpu_s: float
    dataclasses: int
    dataclass_s: float


def measure(times: int = 3, python: Path = PYTHON) -> list[ImportCost]:
    """One ImportCost per step, medians over `times` rounds (steps alternate within a round)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}
    env["OPENBLAS_NUM_THREADS"] = "1"  # as appliance/audio sets it before numpy loads
    samples: list[list[dict[str, float]]] = [[] for _ in STEPS]
    for _ in range(times):
        modules: list[str] = []
        for (label, adds), mine in zip(STEPS, samples):
            modules.extend(adds)
            done = subprocess.run([str(python), "-c", _PROBE, *modules], capture_output=True, text=True,
                                  env=env, timeout=120, cwd=ROOT)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"importing for {label!r} failed: {last}")
            mine.append(json.loads(done.stdout))
    return [ImportCost(label, *(statistics.median(s[key] for s in mine)
                                for key in ("rss_mb", "cpu_s", "dataclasses", "dataclass_s")))
            for (label, _), mine in zip(STEPS, samples)]


def table(costs: list[ImportCost]) -> str:
    lines = ["| imports | peak RSS | added | CPU (start + imports) | added | dataclasses made (their CPU) |",
             "|---|---|---|---|---|---|"]
    previous: ImportCost | None = None
    for cost in costs:
        added_mb = "—" if previous is None else f"+{cost.rss_mb - previous.rss_mb:.1f} MB"
        added_s = "—" if previous is None else f"+{cost.cpu_s - previous.cpu_s:.2f} s"
        lines.append(f"| {cost.label} | {cost.rss_mb:.1f} MB | {added_mb} | {cost.cpu_s:.2f} s | {added_s} | "
                     f"{cost.dataclasses:.0f} ({cost.dataclass_s:.2f} s) |")
        previous = cost
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=5, help="runs per step (median; default 5)")
    opts = parser.parse_args(argv)
    if not PYTHON.exists():
        print(f"bench_imports could not run: no interpreter at {PYTHON}")
        return 1
    try:
        print(table(measure(max(1, opts.times))))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"bench_imports could not run: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
