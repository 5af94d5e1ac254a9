"""Log lines as the journal and a terminal show them: text from the service cannot forge lines or escapes."""

from __future__ import annotations

import ast
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.logsetup import OneLineFilter, setup_logging
from appliance.textsafe import quoted

FORGED = "hello\nFAKE LINE 12:00:00 ERROR appliance.app.daemon: key revoked\x1b[31m"
UNSAFE_CHARS = "\x00\r\t\x0b\x0c\x1b\x7f\x85\x9b\u2028\u2029\u202a\u202e\u2066\u2069\u200f\ud800\udfff"


@pytest.fixture
def restore_root() -> Iterator[None]:
    """setup_logging replaces the root logger's handlers; put the test runner's back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def log_to_text(message: str, *args: object) -> str:
    stream = io.StringIO()
    setup_logging("info", stream=stream)
    logging.getLogger("appliance.test").warning(message, *args)
    return stream.getvalue()


def test_a_forged_newline_and_colour_escape_stay_on_one_visible_line(restore_root: None) -> None:
    out = log_to_text("heard: %s", FORGED)
    assert out.count("\n") == 1 and out.endswith("\n"), out
    assert "\x1b" not in out
    assert "hello\\nFAKE LINE" in out and "\\x1b[31m" in out
    assert "WARNING appliance.test: heard: hello" in out


def test_every_control_bidi_override_and_lone_surrogate_is_escaped(restore_root: None) -> None:
    # A strict UTF-8 stream, like a real stderr: a raw lone surrogate would make the write fail.
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")
    setup_logging("info", stream=stream)
    logging.getLogger("appliance.test").warning("label %s end", f"a{UNSAFE_CHARS}b")
    stream.flush()
    out = raw.getvalue().decode("utf-8")
    assert out.count("\n") == 1 and len(out.splitlines()) == 1, out
    assert "label a" in out and "b end" in out
    assert all(char not in out for char in UNSAFE_CHARS)
    for escape in ("\\x00", "\\r", "\\t", "\\x1b", "\\x85", "\\u2028", "\\u202e", "\\u2066", "\\ud800"):
        assert escape in out


def test_plain_text_and_non_latin_letters_are_left_as_they_are(restore_root: None) -> None:
    out = log_to_text("timer %s set for %d min in C:\\kitchen", "Frühstückseier 🥚 ولد", 5)
    assert "timer Frühstückseier 🥚 ولد set for 5 min in C:\\kitchen\n" in out


def test_a_traceback_still_prints_as_a_traceback(restore_root: None) -> None:
    stream = io.StringIO()
    setup_logging("info", stream=stream)
    try:
        raise ValueError("close reason \x1b[2J from the service")
    except ValueError:
        logging.getLogger("appliance.test").exception("session closed: %s", "bye\nFAKE")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("session closed: bye\\nFAKE"), lines
    assert lines[1] == "Traceback (most recent call last):"
    assert any(line.lstrip().startswith('File "') for line in lines[2:])
    assert lines[-1] == "ValueError: close reason \\x1b[2J from the service"
    assert "\x1b" not in stream.getvalue()


def test_under_journald_a_forged_line_cannot_claim_its_own_priority(
    restore_root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "journal", "w", encoding="utf-8") as stream:
        st_ = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st_.st_dev}:{st_.st_ino}")
        setup_logging("info", stream=stream)
        logging.getLogger("appliance.test").info("transcript: %s", "ok\n<0>appliance: PANIC\r\n")
    written = (tmp_path / "journal").read_text(encoding="utf-8")
    assert written == "<6>appliance.test: transcript: ok\\n<0>appliance: PANIC\\r\\n\n"


def test_secrets_are_still_redacted_next_to_escaped_text(restore_root: None) -> None:
    stream = io.StringIO()
    redactor = setup_logging("info", stream=stream)
    redactor.add("secret-value-123")
    logging.getLogger("appliance.test").warning("key\n%s\x1b", "secret-value-123")
    assert stream.getvalue().endswith("key\\n[redacted]\\x1b\n")


def test_escaping_twice_changes_nothing_more() -> None:
    record = logging.LogRecord("appliance.x", logging.INFO, __file__, 1, "a%sb", ("\n\x1b",), None)
    OneLineFilter().filter(record)
    once = record.getMessage()
    OneLineFilter().filter(record)
    assert record.getMessage() == once == "a\\n\\x1bb"


# --------------------------------------------------------------------------- quoted()


def test_quoted_reads_like_repr_for_short_text() -> None:
    for text in ("plain", "back\\slash", "two\nlines", "\x1b[31mred", "Müsli", "\u202eevil", "\ud800"):
        assert quoted(text) == repr(text)
    assert quoted("it's") == "'it\\'s'", "always single quotes, so the rendering is predictable"
    assert ast.literal_eval(quoted("it's")) == "it's"


def test_quoted_bounds_long_text_and_says_how_long_it_was() -> None:
    rendered = quoted("\x1b" * 10_000, limit=40)
    assert len(rendered) < 80 and "(10000 chars)" in rendered
    assert "\x1b" not in rendered and rendered.startswith("'\\x1b")
    assert quoted("x" * 200) == "'" + "x" * 200 + "'", "exactly at the limit nothing is cut"
    assert quoted("x" * 201).endswith("'... (201 chars)")


@given(st.text(st.characters(exclude_categories=())))  # surrogates too
def test_quoted_is_one_safe_line_and_exact_when_not_cut(text: str) -> None:
    rendered = quoted(text, limit=60)
    assert len(rendered.splitlines()) == 1
    assert all(char.isprintable() for char in rendered)
    if not rendered.endswith(" chars)"):
        assert ast.literal_eval(rendered) == text
