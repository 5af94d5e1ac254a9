"""What a doctor check returns, and how a run of them is shown.

A `Check` is the whole verdict: the text line, the JSON object and the summary are all
made from it here, so the two output forms cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Check", "failed", "format_line", "passed", "print_json", "skipped", "summary_line"]


@dataclass(frozen=True)
class Check:
    """One check's verdict.  `advice` says what to do; it is empty when the check passed."""

    name: str
    ok: bool
    detail: str
    advice: str = ""

    @property
    def skipped(self) -> bool:
        return self.ok and self.detail.startswith("skipped:")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "advice": self.advice}


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail, "")


def failed(name: str, detail: str, advice: str) -> Check:
    return Check(name, False, detail, advice)


def skipped(name: str, why: str) -> Check:
    """A check that did not apply here; it counts as passed."""
    return Check(name, True, f"skipped: {why}", "")


def format_line(check: Check) -> str:
    if check.ok:
        return f"PASS {check.name}: {check.detail}"
    advice = f" — {check.advice}" if check.advice else ""
    return f"FAIL {check.name}: {check.detail}{advice}"


def summary_line(results: Sequence[Check]) -> str:
    """Counts lines; names each failed check once (the mcp check has a line per server)."""
    failures = list(dict.fromkeys(c.name for c in results if not c.ok))
    skip_count = sum(1 for c in results if c.skipped)
    skipped_text = f" ({skip_count} skipped)" if skip_count else ""
    if not failures:
        return f"doctor: all {len(results)} checks passed{skipped_text}"
    failed_count = sum(1 for c in results if not c.ok)
    return f"doctor: {failed_count} of {len(results)} checks failed: {', '.join(failures)}"


def print_json(results: Sequence[Check], printer: Callable[[str], None]) -> None:
    """The `--json` report: one object, ok only when every check passed."""
    ok = all(check.ok for check in results)
    printer(json.dumps({"ok": ok, "checks": [check.as_dict() for check in results]}, indent=2))
