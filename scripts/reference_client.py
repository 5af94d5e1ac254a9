#!/usr/bin/env python3
"""The least Live API client that does the appliance's job: the yardstick of scripts/bench.py.

This is NOT a product path and imports nothing from the `appliance` package. It exists so the
benchmark can say what the daemon costs next to the floor: PyAudio callback streams opened
once (microphone 16 kHz mono, speaker 24 kHz mono, 20 ms buffers), audio sent as it comes,
no pre-roll, no VAD, no resampling, no reconnect. Lines on stdin drive it:

    press     clear local playback at once (local barge-in), send activityStart, stream the mic
    release   send activityEnd, stop streaming
    quit      close the socket and the streams, exit 0

It prints one event per line on stdout, each followed by its time.monotonic():
`ready`, `reply-start`, `reply-cut`, `reply-done` (turnComplete received and playback
drained), `error ...` and `bye`. A closed socket is an error and the end (exit 1).

Usage: reference_client.py --endpoint ws://127.0.0.1:PORT/ws/... [--input-device pulse]
       [--output-device pulse] [--model gemini-3.8-live]   (the key comes from $GEMINI_API_KEY)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import threading
import time
from typing import Any

import pyaudio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

IN_RATE = 16000
OUT_RATE = 24000
FRAME_MS = 20
IN_FRAMES = IN_RATE * FRAME_MS // 1000
OUT_FRAMES = OUT_RATE * FRAME_MS // 1000
SILENCE = bytes(OUT_FRAMES * 2)
#: at most this much reply audio waits for the speaker; more is dropped (the emulator sends ~1.7x real time)
MAX_QUEUED_S = 30
SETUP_TIMEOUT_S = 10.0


def say(event: str) -> None:
    """One event line for the benchmark, stamped so a slow reader does not skew its timings."""
    sys.stdout.write(f"{event} {time.monotonic():.6f}\n")
    sys.stdout.flush()


def setup_message(model: str) -> dict[str, Any]:
    """What the daemon's build_setup asks for that changes the server's traffic: manual activity, transcripts."""
    return {"setup": {
        "model": model if model.startswith("models/") else f"models/{model}",
        "generationConfig": {"responseModalities": ["AUDIO"]},
        "realtimeInputConfig": {
            "automaticActivityDetection": {"disabled": True},
            "activityHandling": "START_OF_ACTIVITY_INTERRUPTS",
            "turnCoverage": "TURN_INCLUDES_ONLY_ACTIVITY",
        },
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
    }}


def find_device(pa: pyaudio.PyAudio, name: str, *, want_input: bool) -> int:
    """The index of the device called `name` (exactly, else the first whose name contains it)."""
    key = "maxInputChannels" if want_input else "maxOutputChannels"
    devices = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    usable = [d for d in devices if int(d[key]) > 0]
    for match in (lambda d: d["name"] == name, lambda d: name in str(d["name"])):
        for device in usable:
            if match(device):
                return int(device["index"])
    raise LookupError(f"no {'input' if want_input else 'output'} device named {name!r}")


class Player:
    """A bounded byte buffer the output callback drains; it says when a finished reply has played out."""

    def __init__(self, on_drained: Any) -> None:
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._limit = MAX_QUEUED_S * OUT_RATE * 2
        self._awaiting_drain = False
        self._on_drained = on_drained  # called from the audio thread

    def add(self, pcm: bytes) -> bool:
        with self._lock:
            room = self._limit - len(self._buf)
            self._buf += pcm[:max(0, room)]
            return room >= len(pcm)

    def clear(self) -> bool:
        """Drop everything queued; True when something was queued or still to be announced."""
        with self._lock:
            had = bool(self._buf) or self._awaiting_drain
            self._buf.clear()
            self._awaiting_drain = False
            return had

    def finish(self) -> None:
        """The reply is complete: announce it once the buffer runs dry."""
        with self._lock:
            self._awaiting_drain = True

    def callback(self, _in: bytes | None, frames: int, _time: Any, _status: int) -> tuple[bytes, int]:
        need = frames * 2
        with self._lock:
            if not self._buf:
                drained, self._awaiting_drain = self._awaiting_drain, False
                chunk = SILENCE if need == len(SILENCE) else bytes(need)
            else:
                chunk = bytes(self._buf[:need])
                del self._buf[:need]
                drained = False
        if drained:
            self._on_drained()
        if len(chunk) < need:
            chunk += bytes(need - len(chunk))
        return chunk, pyaudio.paContinue


class Client:
    """One session: the streams, the socket, and what a press and a release mean."""

    def __init__(self, args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self.args = args
        self.loop = loop
        self.pressed = False
        self.reply_open = False  # activityEnd sent, its turnComplete not yet received
        self.discarding = False  # a cut reply's audio may still arrive: drop it until its turnComplete
        self.reply_started = False
        self.outgoing: asyncio.Queue[str] = asyncio.Queue()
        self.player = Player(lambda: loop.call_soon_threadsafe(say, "reply-done"))
        self.pa = pyaudio.PyAudio()
        self.streams: list[Any] = []

    # -- audio
    def open_streams(self) -> None:
        mic = find_device(self.pa, self.args.input_device, want_input=True)
        speaker = find_device(self.pa, self.args.output_device, want_input=False)
        self.streams.append(self.pa.open(
            format=pyaudio.paInt16, channels=1, rate=OUT_RATE, output=True, output_device_index=speaker,
            frames_per_buffer=OUT_FRAMES, stream_callback=self.player.callback))
        self.streams.append(self.pa.open(
            format=pyaudio.paInt16, channels=1, rate=IN_RATE, input=True, input_device_index=mic,
            frames_per_buffer=IN_FRAMES, stream_callback=self._mic_callback))

    def _mic_callback(self, data: bytes | None, _frames: int, _time: Any, _status: int) -> tuple[None, int]:
        if self.pressed and data:
            self.loop.call_soon_threadsafe(self._mic_chunk, data)
        return None, pyaudio.paContinue

    def _mic_chunk(self, data: bytes) -> None:
        if self.pressed:  # a chunk scheduled just before the release stays out of the next turn
            audio = {"mimeType": f"audio/pcm;rate={IN_RATE}", "data": base64.b64encode(data).decode("ascii")}
            self.outgoing.put_nowait(json.dumps({"realtimeInput": {"audio": audio}}))

    def close_streams(self) -> None:
        for stream in self.streams:
            try:
                stream.stop_stream()
                stream.close()
            except OSError:
                pass
        self.pa.terminate()

    # -- commands
    def press(self) -> None:
        if self.pressed:
            return
        if self.player.clear() or self.reply_open:
            say("reply-cut")
        self.discarding = self.reply_open
        self.outgoing.put_nowait(json.dumps({"realtimeInput": {"activityStart": {}}}))
        self.pressed = True

    def release(self) -> None:
        if not self.pressed:
            return
        self.pressed = False
        self.outgoing.put_nowait(json.dumps({"realtimeInput": {"activityEnd": {}}}))
        self.reply_open = True
        self.reply_started = False

    # -- the socket
    async def send_forever(self, ws: ClientConnection) -> None:
        while True:
            await ws.send(await self.outgoing.get())

    async def receive_forever(self, ws: ClientConnection) -> None:
        async for frame in ws:
            message = json.loads(frame)
            content = message.get("serverContent")
            if content:
                self._content(content)
            elif "goAway" in message:
                say("error goAway (this client does not reconnect)")

    def _content(self, content: dict[str, Any]) -> None:
        if not self.discarding:
            for part in content.get("modelTurn", {}).get("parts", []):
                blob = part.get("inlineData")
                if blob and str(blob.get("mimeType", "")).startswith("audio/pcm"):
                    if not self.reply_started:
                        self.reply_started = True
                        say("reply-start")
                    if not self.player.add(base64.b64decode(blob["data"])):
                        say("error reply audio overflowed the playback buffer")
        if content.get("turnComplete"):
            if self.discarding:
                self.discarding = False
            elif self.reply_open:
                self.player.finish()
            self.reply_open = False


async def read_commands(client: Client) -> None:
    """Lines from stdin until `quit` or end of input."""
    reader = asyncio.StreamReader()
    await client.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        word = line.decode(errors="replace").strip()
        if word == "press":
            client.press()
        elif word == "release":
            client.release()
        elif word == "quit":
            return
        elif word:
            say(f"error unknown command {word!r}")


async def handshake(ws: ClientConnection, model: str) -> None:
    await ws.send(json.dumps(setup_message(model)))
    async with asyncio.timeout(SETUP_TIMEOUT_S):
        while True:
            if "setupComplete" in json.loads(await ws.recv()):
                return


async def run(args: argparse.Namespace) -> int:
    client = Client(args, asyncio.get_running_loop())
    try:
        client.open_streams()
        headers = {"x-goog-api-key": os.environ.get("GEMINI_API_KEY", "")}
        async with connect(args.endpoint, additional_headers=headers, proxy=None, max_size=None) as ws:
            await handshake(ws, args.model)
            say("ready")
            tasks = [asyncio.ensure_future(c) for c in
                     (read_commands(client), client.send_forever(ws), client.receive_forever(ws))]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            quit_asked = tasks[0] in done and tasks[0].exception() is None
            if not quit_asked:
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()
                raise ConnectionClosed(ws.close_rcvd, ws.close_sent)  # the server closed cleanly
        say("bye")
        return 0
    except ConnectionClosed as exc:
        close = exc.rcvd
        say(f"error the socket closed: {close.code if close else 'no close frame'} {close.reason if close else ''}")
    except (OSError, LookupError, TimeoutError, ValueError) as exc:
        say(f"error {type(exc).__name__}: {' '.join(str(exc).split())}")
    finally:
        client.close_streams()
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="ws:// URL of the Live API (the emulator)")
    parser.add_argument("--input-device", default="pulse")
    parser.add_argument("--output-device", default="pulse")
    parser.add_argument("--model", default="gemini-3.8-live")
    args = parser.parse_args()
    if not args.endpoint.startswith(("ws://127.0.0.1", "ws://localhost", "ws://[::1]")):
        parser.error("this yardstick talks only to an emulator on 127.0.0.1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
