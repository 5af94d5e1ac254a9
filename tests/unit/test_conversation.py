"""The turn model, driven by message sequences alone: no sockets, no audio, no clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.live import messages as p
from appliance.live.conversation import Conversation, Origin, Outcome, Phase

AUDIO = p.AudioChunk(b"\0\0" * 240)
DONE = p.TurnComplete()


def ask(conv: Conversation, now: float = 0.0) -> int:
    """A spoken question, delivered."""
    turn, _ = conv.start_activity(now)
    conv.end_activity(now + 1, has_content=True)
    conv.delivered(now + 1)
    return turn


def feed(conv: Conversation, events, now: float = 2.0):
    return [conv.server_event(e, now) for e in events]


def test_a_plain_turn_gets_its_reply_and_completes():
    conv = Conversation()
    turn = ask(conv)
    atts = feed(conv, [p.InputTranscript("hi"), AUDIO, p.GenerationComplete(), DONE])
    assert [a.turn for a in atts] == [turn] * 4
    assert not any(a.residue for a in atts)
    assert atts[-1].ended[0].outcome is Outcome.COMPLETE
    assert not conv.busy


def test_audio_while_the_user_is_still_talking_is_residue():
    conv = Conversation()
    conv.start_activity(0.0)
    att = conv.server_event(AUDIO, 0.5)
    assert att.residue and att.turn is None


def test_barge_in_with_interrupted_then_turn_complete_plays_the_next_reply():
    conv = Conversation()
    first = ask(conv)
    feed(conv, [AUDIO])
    second, ended = conv.start_activity(3.0)  # barge-in: the user speaks over the reply
    assert ended[0].turn == first and ended[0].outcome is Outcome.INTERRUPTED
    residue = feed(conv, [AUDIO, p.Interrupted(), DONE], now=3.1)
    assert all(a.residue for a in residue)
    conv.end_activity(4.0, has_content=True)
    conv.delivered(4.0)
    atts = feed(conv, [AUDIO, DONE], now=4.5)
    assert [a.turn for a in atts] == [second, second]
    assert atts[-1].ended[0].outcome is Outcome.COMPLETE
    assert conv.owed_closers == 0


def test_barge_in_with_interrupted_alone_then_the_next_reply():
    """The "polite" sequence: no separate turnComplete for the cut reply."""
    conv = Conversation()
    ask(conv)
    feed(conv, [AUDIO])
    second, _ = conv.start_activity(3.0)
    feed(conv, [p.Interrupted()], now=3.1)
    conv.end_activity(4.0, has_content=True)
    conv.delivered(4.0)
    atts = feed(conv, [AUDIO, AUDIO, DONE], now=4.5)
    assert [a.turn for a in atts] == [second] * 3
    assert not any(a.residue for a in atts)
    assert atts[-1].ended[0].outcome is Outcome.COMPLETE
    assert conv.owed_closers == 0 and not conv.busy


def test_a_late_closer_after_the_next_turn_was_submitted_is_not_the_next_reply_end():
    conv = Conversation()
    ask(conv)
    feed(conv, [AUDIO])
    second, _ = conv.start_activity(3.0)
    conv.end_activity(3.5, has_content=True)
    conv.delivered(3.5)
    closer = conv.server_event(DONE, 3.6)  # the cut reply's turnComplete, late
    assert closer.residue and not closer.ended
    atts = feed(conv, [AUDIO, DONE], now=4.0)
    assert atts[-1].ended[0].turn == second


def test_a_press_that_cuts_a_reply_without_a_new_question_drops_the_rest():
    conv = Conversation()
    first = ask(conv)
    feed(conv, [AUDIO])
    ended = conv.cut(2.5, "a press")
    assert ended[0].turn == first
    atts = feed(conv, [AUDIO, AUDIO, p.GenerationComplete(), DONE], now=3.0)
    assert all(a.residue for a in atts)
    assert conv.owed_closers == 0 and not conv.busy
    # and the next question is answered normally
    nxt = ask(conv, 5.0)
    assert feed(conv, [AUDIO, DONE], now=6.0)[-1].ended[0].turn == nxt


def test_a_drop_mid_reply_is_lost_and_forgets_what_the_server_owed():
    conv = Conversation()
    first = ask(conv)
    feed(conv, [AUDIO])
    conv.cut(2.1, "press")  # one cut owed ...
    second = ask(conv, 2.2)
    feed(conv, [AUDIO], now=3.0)
    ended = conv.connection_lost(3.1)
    assert ended[0].turn == second and ended[0].outcome is Outcome.LOST
    assert conv.owed_closers == 0 and not conv.busy
    third = ask(conv, 10.0)
    assert feed(conv, [AUDIO, DONE], now=11.0)[-1].ended[0].turn == third
    assert first != third


def test_a_drop_before_the_server_heard_the_question_asks_it_again():
    conv = Conversation()
    turn = ask(conv)
    assert conv.connection_lost(1.5) == []
    assert conv.current.phase is Phase.HELD and conv.needs_replay
    conv.delivered(5.0)  # replayed on the new connection
    assert feed(conv, [AUDIO, DONE], now=6.0)[-1].ended[0].turn == turn


def test_a_drop_after_the_server_heard_the_question_is_lost_not_asked_twice():
    conv = Conversation()
    ask(conv)
    conv.server_event(p.InputTranscript("what time is it"), 1.2)
    ended = conv.connection_lost(1.5)
    assert ended[0].outcome is Outcome.LOST and not conv.needs_replay


def test_no_reply_in_time_times_out_and_its_late_audio_is_dropped():
    conv = Conversation(reply_timeout_s=5.0)
    ask(conv, 0.0)
    assert conv.next_deadline() == 6.0
    assert conv.poll(5.9) == []
    ended = conv.poll(6.0)
    assert ended[0].outcome is Outcome.TIMED_OUT
    late = feed(conv, [AUDIO, DONE], now=7.0)
    assert all(a.residue for a in late)
    nxt = ask(conv, 8.0)
    assert feed(conv, [AUDIO, DONE], now=9.0)[-1].ended[0].turn == nxt


def test_a_stalled_reply_times_out_from_its_last_progress():
    conv = Conversation(reply_timeout_s=5.0)
    ask(conv, 0.0)
    feed(conv, [AUDIO], now=3.0)
    assert conv.next_deadline() == 8.0
    assert conv.poll(8.0)[0].outcome is Outcome.TIMED_OUT


def test_a_question_held_offline_too_long_is_lost():
    conv = Conversation(stale_s=20.0)
    conv.start_activity(0.0)
    conv.end_activity(1.0, has_content=True)  # never delivered: offline
    assert conv.next_deadline() == 21.0
    assert conv.poll(20.9) == []
    ended = conv.poll(21.0)
    assert ended[0].outcome is Outcome.LOST and "offline" in ended[0].detail


def test_a_question_with_nothing_said_ends_empty_off_the_wire():
    conv = Conversation()
    conv.start_activity(0.0)
    ended = conv.end_activity(1.0, has_content=False)
    assert ended[0].outcome is Outcome.EMPTY and not conv.busy


def test_in_progress_turn_complete_keeps_a_nonblocking_tool_turn_open():
    conv = Conversation()
    turn = ask(conv)
    call = p.ToolCall((p.FunctionCall("fc-1", "set_timer", {"seconds": 60}),))
    feed(conv, [call, AUDIO])
    assert conv.pending_calls == {"fc-1"} and conv.busy
    mid = conv.server_event(p.TurnComplete(interaction_status="IN_PROGRESS"), 2.5)
    assert mid.turn == turn and not mid.ended
    conv.tool_response_sent(["fc-1"], 3.0)
    assert conv.pending_calls == set()
    atts = feed(conv, [AUDIO, p.TurnComplete(interaction_status="IDLE")], now=3.5)
    assert atts[-1].ended[0].outcome is Outcome.COMPLETE
    assert not conv.busy


def test_the_reply_timeout_waits_while_a_tool_call_is_ours_to_answer():
    """A home scene that takes a minute: the service waits for us, so the turn must not time out."""
    conv = Conversation(reply_timeout_s=20.0)
    turn = ask(conv)
    feed(conv, [p.ToolCall((p.FunctionCall("fc-1", "movie_scene", {}),)), AUDIO], now=2.0)
    conv.server_event(p.TurnComplete(interaction_status="IN_PROGRESS"), 2.5)
    assert conv.next_deadline() is None and conv.poll(90.0) == []
    conv.tool_response_sent(["fc-1"], 90.0)
    assert conv.next_deadline() == 110.0  # from the answer on, the service has its usual time
    assert conv.poll(109.0) == [] and conv.current.id == turn
    assert conv.poll(111.0)[0].outcome is Outcome.TIMED_OUT


def test_content_with_nothing_in_flight_is_the_services_own_turn():
    conv = Conversation()
    att = conv.server_event(AUDIO, 1.0)
    assert att.turn is not None and not att.residue
    assert conv.current.origin is Origin.SERVER
    assert conv.server_event(DONE, 2.0).ended[0].outcome is Outcome.COMPLETE


def test_tool_calls_are_tracked_even_when_they_are_residue():
    conv = Conversation()
    conv.start_activity(0.0)
    att = conv.server_event(p.ToolCall((p.FunctionCall("fc-9", "get_time", {}),)), 0.5)
    assert att.residue and conv.pending_calls == {"fc-9"}
    conv.server_event(p.ToolCallCancellation(("fc-9",)), 0.6)
    assert conv.pending_calls == set()


def test_a_new_conversation_ends_everything():
    conv = Conversation()
    ask(conv)
    feed(conv, [AUDIO])
    ended = conv.new_conversation(3.0)
    assert ended and not conv.busy and conv.owed_closers == 0


# ---------------------------------------------------------------------------- interleavings

STEPS = st.lists(
    st.sampled_from(
        ["press", "say", "release_empty", "release", "audio", "interrupted", "done", "in_progress",
         "drop", "cut", "tick", "tool", "tool_answer"]
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(STEPS)
def test_any_interleaving_ends_with_no_turn_in_flight(steps):
    """Whatever happens, after a drop (or the timeout) and a quiet spell nothing is in flight,
    and the next question's reply is attributed to it."""
    conv = Conversation(reply_timeout_s=5.0, stale_s=20.0)
    now = 0.0
    ended_ids: list[int] = []
    for step in steps:
        now += 0.3
        out = []
        if step == "press":
            _, out = conv.start_activity(now)
        elif step == "release_empty":
            out = conv.end_activity(now, has_content=False)
        elif step == "release":
            out = conv.end_activity(now, has_content=True)
            conv.delivered(now)
        elif step == "audio":
            out = list(conv.server_event(AUDIO, now).ended)
        elif step == "interrupted":
            out = list(conv.server_event(p.Interrupted(), now).ended)
        elif step == "done":
            out = list(conv.server_event(DONE, now).ended)
        elif step == "in_progress":
            out = list(conv.server_event(p.TurnComplete(interaction_status="IN_PROGRESS"), now).ended)
        elif step == "drop":
            out = conv.connection_lost(now)
        elif step == "cut":
            out = conv.cut(now, "press")
        elif step == "tick":
            now += 6.0
            out = conv.poll(now)
        elif step == "tool":
            out = list(conv.server_event(p.ToolCall((p.FunctionCall(f"fc-{now}", "x", {}),)), now).ended)
        elif step == "tool_answer":
            conv.tool_response_sent(list(conv.pending_calls), now)
        ended_ids += [e.turn for e in out]
    assert len(ended_ids) == len(set(ended_ids)), "a turn ended twice"
    # the world settles: the connection drops (or not) and time passes
    conv.connection_lost(now)
    conv.poll(now + 60)
    if conv.current is not None and conv.current.phase is Phase.OPEN:
        conv.end_activity(now + 60, has_content=False)
    assert not conv.busy
    assert conv.owed_closers == 0
    # the next question is answered, and only its reply plays
    turn = ask(conv, now + 100)
    atts = feed(conv, [AUDIO, DONE], now=now + 101)
    assert [a.turn for a in atts] == [turn, turn]
    assert atts[-1].ended[0].outcome is Outcome.COMPLETE


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_without_a_drop_the_timeout_alone_unsticks_every_turn(steps):
    conv = Conversation(reply_timeout_s=5.0, stale_s=20.0)
    now = 0.0
    for step in steps:
        now += 0.3
        if step == "press":
            conv.start_activity(now)
        elif step in ("release", "release_empty"):
            conv.end_activity(now, has_content=step == "release")
            conv.delivered(now)
        elif step == "audio":
            conv.server_event(AUDIO, now)
        elif step == "interrupted":
            conv.server_event(p.Interrupted(), now)
        elif step == "done":
            conv.server_event(DONE, now)
        elif step == "cut":
            conv.cut(now, "press")
    if conv.current is not None and conv.current.phase is Phase.OPEN:
        conv.end_activity(now, has_content=True)
        conv.delivered(now)
    conv.poll(now + 30)
    assert not (conv.current is not None and conv.current.in_flight)
