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
