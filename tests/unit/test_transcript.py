"""Transcription fragments become one line per speaker per turn."""

from __future__ import annotations

import pytest

from appliance.app.transcript import MAX_LINE_CHARS, TranscriptLine, Transcripts


def test_fragments_of_a_turn_become_one_question_line_and_one_answer_line() -> None:
    t = Transcripts()
    out: list[TranscriptLine] = []
    for who, text in [("user", "set a"), ("user", " timer for"), ("user", " one minute"),
                      ("reply", "Sure,"), ("reply", " sixty"), ("reply", " seconds,"), ("reply", " starting now.")]:
        out += t.add(3, who, text)
    assert out == [TranscriptLine(3, "user", "set a timer for one minute")]  # out as the answer starts
    assert t.end_turn(3) == [TranscriptLine(3, "reply", "Sure, sixty seconds, starting now.")]
    assert t.end_turn(3) == []


def test_a_question_heard_after_the_answer_began_still_comes_out_first_at_the_turn_end() -> None:
    t = Transcripts()
    assert t.add(1, "reply", "It is") == []
    assert t.add(1, "user", "what time is it") == []
    assert t.add(1, "reply", " noon.") == [TranscriptLine(1, "user", "what time is it")]
    assert t.end_turn(1) == [TranscriptLine(1, "reply", "It is noon.")]


def test_a_cut_reply_says_so_and_whitespace_is_tidied() -> None:
    t = Transcripts()
    t.add(2, "reply", "  Here is  a\nlong")
    assert t.end_turn(2, interrupted=True) == [TranscriptLine(2, "reply", "Here is a long", interrupted=True)]


def test_a_turn_that_never_ended_is_handed_out_when_the_next_begins() -> None:
    t = Transcripts()
    t.add(4, "user", "hello")
    t.add(4, "reply", "Hi")
    assert t.add(5, "user", "again") == [TranscriptLine(4, "reply", "Hi")]
    assert t.end_turn(4) == []  # that turn is gone already
    assert t.end_turn(5) == [TranscriptLine(5, "user", "again")]


def test_a_runaway_transcription_is_cut_with_an_ellipsis() -> None:
    t = Transcripts()
    for _ in range(MAX_LINE_CHARS):
        t.add(1, "reply", "ab")
    (line,) = t.end_turn(1)
    assert len(line.text) == MAX_LINE_CHARS + 1 and line.text.endswith("…")


def test_empty_fragments_make_no_lines_and_unknown_speakers_are_refused() -> None:
    t = Transcripts()
    assert t.add(1, "user", "") == [] and t.end_turn(1) == []
    with pytest.raises(ValueError):
        t.add(1, "model", "x")
