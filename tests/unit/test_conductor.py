"""The conductor's state machine with named fakes: every way a reply can end leads back
to rest, and the next question's reply always plays."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from appliance.hw.gestures import Gesture
from appliance.app.conductor import Conductor, State
from appliance.settings.schema import Config
from appliance.live import messages as p
from appliance.live.link import LinkState
from appliance.app.supervisor import Supervisor
from fakes import FakeLights, FakeSession, FakeSpeaker, FakeUplink

AUDIO = p.AudioChunk(b"\1\0" * 480)
DONE = p.TurnComplete()


class Rig:
    def __init__(self) -> None:
        self.session = FakeSession()
        self.uplink = FakeUplink()
        self.speaker = FakeSpeaker()
        self.lights = FakeLights()
        self.conductor = Conductor(Config(), self.session, self.uplink, self.speaker, self.lights,
                                   clock=lambda: self.session.now)
        self.conductor.start()

    async def settle(self) -> None:
        """Let the conductor take everything queued (no sleeping: until the queue is empty)."""
        for _ in range(100):
            await asyncio.sleep(0)
            if self.session.events.empty():
                for _ in range(5):
                    await asyncio.sleep(0)
                return
        raise AssertionError("the conductor does not keep up")

    async def ask(self) -> int:
        """Press, speak, release: a question is submitted."""
        self.conductor.gesture(Gesture.PRESS)
        assert self.conductor.state is State.LISTENING
        self.conductor.gesture(Gesture.RELEASE_HOLD)
        turn = self.session.ask()
        self.uplink.report(turn)
        await self.settle()
        return turn

    async def answered(self) -> None:
        """The service answers the question in flight, whole."""
        start = len(self.speaker.fed)
        self.session.serve(AUDIO, AUDIO, p.GenerationComplete(), DONE)
        await self.settle()
        assert len(self.speaker.fed) == start + 2, "the reply did not play"
        assert self.conductor.state is State.IDLE

    async def close(self) -> None:
        await self.conductor.close()


def run(body):
    async def main():
        rig = Rig()
        try:
            await body(rig)
        finally:
            await rig.close()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_question_is_answered_and_the_appliance_rests():
    async def body(rig: Rig):
        await rig.ask()
        assert rig.conductor.state is State.THINKING
        await rig.answered()
        assert rig.conductor.turns[-1].outcome == "answered"

    run(body)


def test_what_was_said_comes_out_as_one_line_per_speaker_and_a_cut_reply_says_so():
    from appliance.app.transcript import TranscriptLine

    async def body(rig: Rig):
        said: list[TranscriptLine] = []
        rig.conductor.on_transcript = said.append
        turn = await rig.ask()
        rig.session.serve(p.InputTranscript("set a timer"), p.InputTranscript(" for eggs"),
                          p.OutputTranscript("Sure,"), AUDIO, p.OutputTranscript(" six minutes."),
                          p.GenerationComplete(), DONE)
        await rig.settle()
        assert said == [TranscriptLine(turn, "user", "set a timer for eggs"),
                        TranscriptLine(turn, "reply", "Sure, six minutes.")]
        said.clear()
        turn = await rig.ask()
        rig.session.serve(p.OutputTranscript("Here is a long"), AUDIO)
        await rig.settle()
        rig.conductor.gesture(Gesture.PRESS)  # barge-in
        await rig.settle()
        assert said == [TranscriptLine(turn, "reply", "Here is a long", interrupted=True)]

    run(body)


def test_an_announcement_waits_for_the_conversation_then_chimes_and_plays_as_a_reply():
    async def body(rig: Rig):
        await rig.ask()  # someone is talking to the box
        item = rig.conductor.announce("The washing machine is done")
        await rig.settle()
        assert item.state == "waiting" and rig.session.texts == []
        rig.session.serve(AUDIO, AUDIO, p.GenerationComplete(), DONE)  # their reply ends: now it is said
        await rig.settle()
        assert rig.session.texts and rig.session.texts[0].endswith(": The washing machine is done")
        assert rig.speaker.earcons[-1] == "announce"
        assert rig.speaker.replies_after_earcons[-1] is True  # the voice waits for the chime
        assert rig.conductor.state is State.THINKING and item.state == "spoken"
        await rig.answered()
        assert rig.conductor.turns[-1].mode == "announcement"
        assert rig.conductor.status()["announcements"][-1] == {"text": "The washing machine is done", "state": "spoken"}

    run(body)


def test_an_announcement_while_offline_plays_the_alert_and_says_why():
    async def body(rig: Rig):
        rig.session.link(LinkState.OFFLINE, "router down")
        await rig.settle()
        item = rig.conductor.announce("Dinner is ready")
        assert item.state == "dropped" and "offline" in item.why
        assert rig.speaker.earcons[-1] == "no_network" and rig.session.texts == []

    run(body)


def test_a_drop_mid_reply_returns_to_idle_with_the_error_earcon_and_the_next_reply_plays():
    async def body(rig: Rig):
        await rig.ask()
        rig.session.serve(AUDIO)
        await rig.settle()
        assert rig.conductor.state is State.SPEAKING
        rig.session.drop()
        await rig.settle()
        assert rig.conductor.state is State.OFFLINE  # not stuck in speaking
        assert rig.speaker.earcons[-1] == "error"
        assert rig.conductor.turns[-1].outcome == "reply lost"
        rig.session.link(LinkState.READY, "resumed")
        await rig.settle()
        assert rig.conductor.state is State.IDLE
        await rig.ask()
        await rig.answered()

    run(body)


def test_a_drop_before_any_reply_keeps_waiting_and_the_timeout_ends_it():
    async def body(rig: Rig):
        await rig.ask()
        rig.session.serve(p.InputTranscript("hello"))  # heard, then the link goes
        rig.session.drop()
        await rig.settle()
        assert rig.conductor.state is not State.THINKING
        assert rig.speaker.earcons[-1] == "error"

    run(body)


def test_a_reply_that_never_comes_times_out_to_idle_and_late_audio_stays_silent():
    async def body(rig: Rig):
        await rig.ask()
        rig.session.tick(6.0)
        await rig.settle()
        assert rig.conductor.state is State.IDLE
        assert rig.speaker.earcons[-1] == "error"
        assert rig.conductor.turns[-1].outcome == "no reply in time"
        fed = len(rig.speaker.fed)
        rig.session.serve(AUDIO, DONE)  # the late reply
        await rig.settle()
        assert len(rig.speaker.fed) == fed
        await rig.ask()
        await rig.answered()

    run(body)


@pytest.mark.parametrize("closer", [True, False], ids=["interrupted+turnComplete", "interrupted-alone"])
def test_barge_in_cuts_the_reply_and_the_next_reply_plays(closer):
    async def body(rig: Rig):
        await rig.ask()
        rig.session.serve(AUDIO)
        await rig.settle()
        assert rig.conductor.state is State.SPEAKING
        rig.conductor.gesture(Gesture.PRESS)  # barge-in
        assert rig.conductor.state is State.LISTENING
        assert rig.speaker.flushes == 1 and rig.uplink.presses[-1][1] is True
        rig.session.serve(AUDIO)  # residue of the cut reply while the user talks
        rig.conductor.gesture(Gesture.RELEASE_HOLD)
        second = rig.session.ask()
        # the service's end of the cut reply, in either documented order
        rig.session.serve(p.Interrupted(), *([DONE] if closer else []))
        rig.uplink.report(second)
        await rig.settle()
        fed = len(rig.speaker.fed)
        assert fed == 1, "residue of the cut reply was played"
        assert rig.conductor.state is State.THINKING
        await rig.answered()
        assert rig.session.conversation.owed_closers == 0

    run(body)


def test_barge_in_with_nothing_said_returns_to_idle_and_leaves_nothing_open():
    async def body(rig: Rig):
        await rig.ask()
        rig.session.serve(AUDIO)
        await rig.settle()
        rig.conductor.gesture(Gesture.PRESS)
        rig.conductor.gesture(Gesture.RELEASE_HOLD)
        rig.uplink.report(None, submitted=False)  # no speech: nothing was sent
        rig.session.serve(AUDIO, AUDIO, DONE)  # the rest of the cut reply
        await rig.settle()
        assert rig.conductor.state is State.IDLE
        assert len(rig.speaker.fed) == 1
        assert not rig.session.busy
        await rig.ask()
        await rig.answered()

    run(body)


def test_go_away_during_a_reply_keeps_playing_it():
    async def body(rig: Rig):
        await rig.ask()
        rig.session.serve(p.GoAway(5.0), AUDIO)
        rig.session.link(LinkState.CONNECTING, "connection handed over")
        await rig.settle()
        assert rig.conductor.state is State.SPEAKING
        rig.session.link(LinkState.READY, "resumed")
        await rig.answered()

    run(body)


def test_a_press_while_offline_tries_at_once_and_keeps_the_question():
    async def body(rig: Rig):
        rig.session.link(LinkState.OFFLINE, "connection lost")
        await rig.settle()
        rig.conductor.gesture(Gesture.PRESS)
        assert rig.session.tries == 1
        assert rig.conductor.state is State.LISTENING
        assert rig.speaker.earcons[-1] == "no_network"

    run(body)


def test_a_press_in_the_error_state_plays_the_error_earcon_and_does_not_listen():
    async def body(rig: Rig):
        rig.session.link(LinkState.ERROR, "API key not valid")
        await rig.settle()
        rig.conductor.gesture(Gesture.PRESS)
        assert rig.conductor.state is State.ERROR
        assert rig.speaker.earcons[-1] == "error" and not rig.uplink.presses

    run(body)


def test_without_a_key_the_appliance_shows_why_and_never_connects():
    async def body(rig: Rig):
        await rig.close()
        rig2 = Rig.__new__(Rig)
        rig2.session, rig2.uplink, rig2.speaker, rig2.lights = FakeSession(), FakeUplink(), FakeSpeaker(), FakeLights()
        c = Conductor(Config(), rig2.session, rig2.uplink, rig2.speaker, rig2.lights)
        c.cannot_talk("no API key: set GEMINI_API_KEY")
        c.start()
        try:
            assert not rig2.session.started
            assert c.state is State.ERROR and c.status()["last_error"].startswith("no API key")
            c.gesture(Gesture.PRESS)
            assert c.state is State.ERROR and rig2.speaker.earcons == ["error"]
        finally:
            await c.close()

    run(body)


def test_a_missing_microphone_is_shown_and_a_press_does_not_listen():
    async def body(rig: Rig):
        rig.conductor.device_changed("microphone", False, "device gone")
        assert rig.conductor.state is State.NO_MICROPHONE
        assert rig.lights.shown[-1] == "error"
        rig.conductor.gesture(Gesture.PRESS)
        assert not rig.uplink.presses and rig.speaker.earcons[-1] == "error"
        rig.conductor.device_changed("microphone", True, "device back")
        assert rig.conductor.state is State.IDLE
        await rig.ask()
        await rig.answered()

    run(body)


def test_a_nonblocking_tool_turn_stays_open_until_idle():
    async def body(rig: Rig):
        await rig.ask()
        call = p.ToolCall((p.FunctionCall("fc-1", "get_time", {}),))
        rig.session.serve(call, AUDIO, p.TurnComplete(interaction_status="IN_PROGRESS"))
        await rig.settle()
        assert rig.session.tool_responses and rig.session.tool_responses[0].id == "fc-1"
        assert rig.conductor.state is State.SPEAKING
        rig.session.serve(AUDIO, p.TurnComplete(interaction_status="IDLE"))
        await rig.settle()
        assert rig.conductor.state is State.IDLE and len(rig.speaker.fed) == 2

    run(body)


def test_reply_audio_at_another_rate_is_refused_not_played_fast():
    async def body(rig: Rig):
        await rig.ask()
        rig.session.serve(p.AudioChunk(b"\0\0" * 160, rate=16000), DONE)
        await rig.settle()
        assert rig.speaker.fed == []
        assert rig.conductor.state is State.IDLE

    run(body)


def test_a_dead_uplink_task_is_noticed_by_the_supervisor():
    async def body(rig: Rig):
        sup = Supervisor()
        sup.adopt_all(rig.conductor.tasks)
        assert sup.alive()
        rig.uplink.die(RuntimeError("callback bug"))
        await asyncio.wait_for(sup.failed.wait(), 2)
        assert not sup.alive() and "uplink" in sup.failure and "callback bug" in sup.failure

    run(body)


def test_reply_audio_already_queued_when_the_user_cuts_in_is_not_played():
    async def body(rig: Rig):
        await rig.ask()
        rig.session.serve(AUDIO)
        await rig.settle()
        rig.session.serve(AUDIO, AUDIO)  # attributed to the reply, still in the queue ...
        rig.conductor.gesture(Gesture.PRESS)  # ... when the press cuts it
        await rig.settle()
        assert len(rig.speaker.fed) == 1
        assert rig.conductor.state is State.LISTENING

    run(body)


def test_status_says_which_model_voice_and_language_the_conversation_uses():
    async def body(rig: Rig):
        status = rig.conductor.status()
        assert (status["model"], status["voice"], status["language"]) == ("gemini-3.8-live", "Kore", None)
        assert list(status).index("connection") < list(status).index("model")
        live = dataclasses.replace(rig.conductor.cfg.live, voice="Puck", language="de-DE")
        rig.conductor.use_settings(dataclasses.replace(rig.conductor.cfg, live=live))
        status = rig.conductor.status()
        assert (status["voice"], status["language"]) == ("Puck", "de-DE")

    run(body)


# ------------------------------------------------------------------ mute


def wire_mute(rig: Rig) -> list[bool]:
    """Own the mute as the daemon does: the hold asks, the owner switches; returns the switches made."""
    switched: list[bool] = []

    def toggle() -> None:
        switched.append(not rig.conductor.muted)
        rig.conductor.set_muted(not rig.conductor.muted, "held")

    rig.conductor.on_mute_toggle = toggle
    return switched


def test_holding_to_mute_shows_muted_and_a_press_then_plays_the_muted_earcon_and_does_not_listen():
    async def body(rig: Rig):
        switched = wire_mute(rig)
        rig.conductor.gesture(Gesture.PRESS)
        rig.conductor.gesture(Gesture.LONG_HOLD)  # the hold passes the new-conversation mark first
        await rig.settle()
        rig.conductor.gesture(Gesture.MUTE_HOLD)
        rig.conductor.gesture(Gesture.RELEASE_HOLD)
        assert switched == [True]
        assert rig.conductor.state is State.MUTED and rig.lights.shown[-1] == "muted"
        assert rig.speaker.earcons[-1] == "muted"
        presses = len(rig.uplink.presses)
        rig.session.link(LinkState.READY, "the new conversation is up")  # the link cannot unmute it
        await rig.settle()
        rig.conductor.gesture(Gesture.PRESS)
        assert len(rig.uplink.presses) == presses and not rig.uplink.listening
        assert rig.speaker.earcons[-1] == "muted"
        assert rig.conductor.state is State.MUTED and rig.conductor.status()["muted"] is True
        rig.conductor.gesture(Gesture.RELEASE_TAP)
        assert rig.conductor.state is State.MUTED

    run(body)


def test_while_muted_a_long_hold_does_nothing_and_a_mute_hold_unmutes():
    async def body(rig: Rig):
        switched = wire_mute(rig)
        rig.conductor.set_muted(True, "ctl")
        rig.conductor.gesture(Gesture.PRESS)
        rig.conductor.gesture(Gesture.LONG_HOLD)
        assert rig.session.new_conversations == 0 and rig.conductor.state is State.MUTED
        rig.conductor.gesture(Gesture.MUTE_HOLD)
        rig.conductor.gesture(Gesture.RELEASE_HOLD)
        assert switched == [False] and not rig.conductor.muted
        assert rig.conductor.state is State.IDLE and rig.speaker.earcons[-1] == "unmuted"
        assert rig.conductor.status()["muted"] is False
        await rig.ask()
        await rig.answered()

    run(body)


def test_a_mute_hold_while_talking_is_a_long_question_not_a_mute():
    async def body(rig: Rig):
        switched = wire_mute(rig)
        rig.conductor.gesture(Gesture.PRESS)
        rig.uplink.heard_speech = True
        rig.conductor.gesture(Gesture.LONG_HOLD)
        rig.conductor.gesture(Gesture.MUTE_HOLD)
        assert switched == [] and not rig.conductor.muted
        assert rig.conductor.state is State.LISTENING and rig.uplink.listening

    run(body)


def test_muting_while_a_question_is_begun_drops_it_and_rests_muted():
    async def body(rig: Rig):
        rig.conductor.gesture(Gesture.PRESS)
        assert rig.uplink.listening
        rig.conductor.set_muted(True, "ctl")
        assert not rig.uplink.listening
        assert rig.conductor.state is State.MUTED and rig.lights.shown[-1] == "muted"
        rig.conductor.gesture(Gesture.RELEASE_HOLD)  # the finger comes up after the mute
        assert rig.conductor.state is State.MUTED

    run(body)


def test_a_reply_already_coming_plays_while_muted_and_then_the_muted_light_is_back():
    async def body(rig: Rig):
        await rig.ask()
        rig.conductor.set_muted(True, "ctl")
        assert rig.conductor.state is State.THINKING  # the answer to what was asked still comes
        rig.session.serve(AUDIO, AUDIO, p.GenerationComplete(), DONE)
        await rig.settle()
        assert len(rig.speaker.fed) == 2
        assert rig.conductor.state is State.MUTED and rig.lights.shown[-1] == "muted"

    run(body)


def test_a_press_while_muted_silences_a_reply_that_is_playing():
    async def body(rig: Rig):
        await rig.ask()
        rig.session.serve(AUDIO)
        await rig.settle()
        rig.conductor.set_muted(True, "ctl")
        assert rig.conductor.state is State.SPEAKING
        rig.conductor.gesture(Gesture.PRESS)
        assert rig.speaker.flushes == 1 and rig.speaker.earcons[-1] == "muted"
        assert rig.conductor.state is State.MUTED and not rig.uplink.listening

    run(body)


def test_a_new_conversation_while_muted_keeps_the_muted_light():
    async def body(rig: Rig):
        rig.conductor.set_muted(True, "ctl")
        shown = len(rig.lights.shown)
        rig.conductor.new_conversation("appliance ctl")
        assert rig.session.new_conversations == 1
        assert rig.conductor.state is State.MUTED and "connecting" not in rig.lights.shown[shown:]

    run(body)


def test_a_press_while_muted_still_stops_a_ringing_alarm_first():
    from types import SimpleNamespace

    from fakes import FakeTimers

    @dataclasses.dataclass
    class Timers(FakeTimers):
        alarm_level: int = 85

    @dataclasses.dataclass
    class Speaker(FakeSpeaker):
        def play_alarm(self, level: int, since_s: float) -> bool:
            self.earcons.append("alarm")
            return True

    async def main() -> None:
        session, uplink, speaker, lights, timers = FakeSession(), FakeUplink(), Speaker(), FakeLights(), Timers()
        conductor = Conductor(Config(), session, uplink, speaker, lights, clock=lambda: session.now, alarms=timers)
        conductor.start()
        try:
            conductor.set_muted(True, "ctl", announce=False)
            timers.ringing.append("eggs")
            conductor.timer_rang(SimpleNamespace(label="eggs"))
            assert conductor.state is State.ALARM and lights.shown[-1] == "alarm"
            conductor.gesture(Gesture.PRESS)
            assert not timers.ringing, "the press did not stop the alarm"
            assert conductor.state is State.MUTED and lights.shown[-1] == "muted"
            assert "muted" not in speaker.earcons, "the press was spent on the alarm"
            assert not uplink.presses
        finally:
            await conductor.close()

    asyncio.run(asyncio.wait_for(main(), 10))
