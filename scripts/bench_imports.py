#!/usr/bin/env python3
"""Where the daemon's start-up memory and CPU go: its imports, step by step, against the reference's.

Each row is a fresh interpreter that imports one more group than the row above it: first what
scripts/reference_client.py imports (asyncio, PyAudio, websockets), then numpy, then the other
runtime dependencies, then the appliance's own modules as `appliance run` loads them. A row
shows the process's peak RSS (VmHWM) and CPU after its imports, and how many dataclasses were
made while importing (Python 3.11-3.13 compile several methods for each, at every start).
Medians of a few runs; the differences between rows are what each group costs.

    .venv/bin/python scripts/bench_imports.py [--times N]

A second table splits PortAudio's device scan (`pyaudio.PyAudio()`, which every PyAudio client
pays at start): once with this machine's ALSA configuration, once with only a sound server's
plugin (the system's /etc/alsa/conf.d left out), as on a Pi without the alsa-plugins package.
Every plugin PortAudio probes is loaded and stays loaded, and some bring large libraries with them
(the a52 encoder brings libavcodec).

scripts/bench.py prints both tables after its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
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


#: run in each interpreter: RSS before and after PortAudio's scan, and the ALSA plugins it loaded
_SCAN_PROBE = """
import json, pyaudio
def hwm():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
before = hwm()
pa = pyaudio.PyAudio()
after = hwm()
plugins = {line.split()[-1] for line in open("/proc/self/maps") if "/alsa-lib/libasound_module_" in line}
print(json.dumps({"before_mb": before * 1024 / 1e6, "after_mb": after * 1024 / 1e6, "plugins": len(plugins)}))
pa.terminate()
"""

SYSTEM_ALSA_CONF = Path("/usr/share/alsa/alsa.conf")


@dataclass(frozen=True)
class ScanCost:
    label: str
    scan_mb: float  # what PyAudio() added to the peak RSS
    plugins: int  # ALSA plugin modules loaded by the scan


def lean_alsa_top(work: Path) -> str:
    """The system's alsa.conf without its conf.d directories (where alsa-plugins puts its PCMs), in `work`."""
    text = SYSTEM_ALSA_CONF.read_text()
    lean = work / "alsa-lean.conf"
    lean.write_text("".join(line for line in text.splitlines(keepends=True) if "alsa/conf.d" not in line))
    return str(lean)


def lean_alsa_config(work: Path) -> str:
    """An ALSA_CONFIG_PATH of lean_alsa_top() plus one pulse PCM."""
    lean = lean_alsa_top(work)
    pulse = work / "asoundrc-pulse"
    pulse.write_text("pcm.pulse { type pulse }\nctl.pulse { type pulse }\n")
    return f"{lean}:{pulse}"


def measure_scan(work: Path, times: int = 3, python: Path = PYTHON) -> list[ScanCost]:
    """PortAudio's scan with the machine's ALSA configuration and with a sound server's plugin only."""
    if not SYSTEM_ALSA_CONF.is_file():
        raise RuntimeError(f"no {SYSTEM_ALSA_CONF} (alsa-lib's configuration) on this machine")
    base = {k: v for k, v in os.environ.items() if k not in ("ALSA_CONFIG_PATH", "PULSE_SERVER")}
    variants = (("this machine's ALSA configuration", base),
                ("only a sound server's plugin (no conf.d)", {**base, "ALSA_CONFIG_PATH": lean_alsa_config(work)}))
    costs = []
    for label, env in variants:
        runs = []
        for _ in range(times):
            done = subprocess.run([str(python), "-c", _SCAN_PROBE], capture_output=True, text=True, env=env,
                                  timeout=120, cwd=ROOT)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"PortAudio's scan with {label} failed: {last}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        costs.append(ScanCost(label, statistics.median(r["after_mb"] - r["before_mb"] for r in runs),
                              int(statistics.median(r["plugins"] for r in runs))))
    return costs


def scan_table(costs: list[ScanCost]) -> str:
    lines = ["| PortAudio's device scan (`pyaudio.PyAudio()`) with | adds to peak RSS | ALSA plugins loaded |",
             "|---|---|---|"]
    lines += [f"| {c.label} | +{c.scan_mb:.1f} MB | {c.plugins} |" for c in costs]
    return "\n".join(lines)


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
        print()
        with tempfile.TemporaryDirectory() as work:
            print(scan_table(measure_scan(Path(work), max(1, opts.times))))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"bench_imports could not run: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
