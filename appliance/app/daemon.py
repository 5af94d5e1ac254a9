"""`appliance run`: the daemon that lives on the kitchen counter.

It opens the microphone and speaker once and keeps them open, connects the Live
session (kept warm while idle), wires the button (or the keyboard), the LEDs (dimmed
at night) and the control socket to the conductor, and talks to systemd: READY once audio and
GPIO are up (the session may still be connecting), STATUS with the state, the
watchdog only while the event loop, both audio callbacks and every long-lived task
are alive, STOPPING on the way out.  SIGTERM ends it within two seconds.

A mute (`ctl mute on`, or the button held `button.mute_hold_s`; see `app.mute`) closes the
microphone stream itself, and a remembered one is honoured before the microphone ever opens.

SIGHUP (`systemctl reload appliance`) reads the config again, from where it came at the start;
`reload` says which change applies when (at once, in a new conversation at the next idle
moment, or only after a restart), and a config with a mistake is refused with the running
settings kept.

Every long-lived task is adopted by a `Supervisor`: one that dies is logged with
its traceback and the daemon exits 1, so systemd restarts it.  A missing API key
is not a reason to exit (systemd would only restart into the same state): the
appliance shows the error, rings its timers and says why in `ctl status`.
"""

from __future__ import annotations

import asyncio
from functools import partial
import logging
import signal
import sys
from contextlib import AsyncExitStack
from typing import Any, Callable

from appliance.console import print_now
from appliance.ipc import sdnotify
from appliance.live.from_config import session_from_config, session_settings, use_for_next_session
from appliance.app.mute import MuteStore, MuteSwitch
from appliance.app.reload import Plan, diff, load_like
from appliance.app.supervisor import Supervisor
from appliance.app.control_commands import control_command
from appliance.app.home import start_home_servers, watch_home_servers
from appliance.app.tool_router import ToolRouter
from appliance.hw.button import ButtonError
from appliance.hw.gestures import Gesture
from appliance.app.conductor import Conductor, State
from appliance.live.endpoint import InsecureEndpointError, check_endpoint, endpoint_url
from appliance.settings.keys import load_api_key
from appliance.settings.paths import control_socket_path, secure_control_socket_path, state_dir
from appliance.settings.errors import ConfigError
from appliance.settings.schema import Config
from appliance.ipc.server import ControlServer
from appliance.ipc.wire import ControlError
from appliance.hw.leds import LedsError, build_leds
from appliance.hw.night import NightError, NightLights, NightMode, NightWindow
from appliance.netutil import is_loopback_host
from appliance.settings.secrets import NO_API_KEY, Secret, install_redaction
from appliance.app.transcript import TranscriptLine
from appliance.app.turntaking import Uplink
from appliance.textsafe import escape_controls

log = logging.getLogger(__name__)

#: both audio callbacks must have run this recently for the watchdog to be fed
AUDIO_ALIVE_S = 2.0
#: SIGTERM to exit; systemd's default stop timeout is far longer, the promise is 2 s
SHUTDOWN_BUDGET_S = 1.5
#: exit code when a long-lived task died (systemd's Restart=on-failure restarts it)
EXIT_TASK_DIED = 1
#: why a reload asks for a new conversation; a reload back to the settings in use cancels only that
_NEW_SETTINGS = "new settings"


class DaemonError(Exception):
    """The daemon cannot start; the text is one line for the owner."""


def _api_key(cfg: Config) -> tuple[Secret | None, str | None]:
    """The key, and why the appliance cannot talk without one (None when it can)."""
    try:
        key = load_api_key(cfg)
    except ConfigError as exc:
        raise DaemonError(str(exc)) from None
    from urllib.parse import urlsplit

    host = urlsplit(endpoint_url(cfg.live)).hostname or ""
    if key is None and not is_loopback_host(host):
        return None, NO_API_KEY
    return key, None


class Daemon:
    """Everything `appliance run` owns; `run()` returns the exit code."""

    def __init__(self, cfg: Config, *, keyboard: bool = False, pin_factory: Any = None,
                 printer: Callable[[str], None] = print_now, audio_host: Any = None,
                 load: Callable[[], Config] | None = None) -> None:
        #: the settings in force (a reload changes it; see `reload`)
        self.cfg = cfg
        #: reads the config again for a reload (default: as `cfg` was read)
        self.load = load or load_like(cfg)
        #: a PortAudioHost to use instead of the system's (the soak's virtual card); not closed here
        self.audio_host = audio_host
        self._early_absence: dict[str, str] = {}
        self._stopping_sent = False
        self.keyboard = keyboard
        self.pin_factory = pin_factory
        self.printer = printer
        self.conductor: Conductor | None = None
        #: the MCP servers' tools (appliance.mcp.manager.McpManager); None without [[mcp.servers]]
        self.home: Any = None
        self.tool_router: ToolRouter | None = None
        self.player: Any = None
        self.capture: Any = None
        self.control_path = control_socket_path(cfg)
        self._stop = asyncio.Event()
        self.virtual_button: Any = None
        self.timers: Any = None
        self.night: NightLights | None = None
        self.leds: Any = None
        self.session: Any = None
        self.tools: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.supervisor = Supervisor()
        self.mute: MuteSwitch | None = None

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        try:
            check_endpoint(endpoint_url(self.cfg.live))
        except InsecureEndpointError as exc:
            raise DaemonError(str(exc)) from None
        try:
            self.control_path = secure_control_socket_path(self.cfg)
        except ConfigError as exc:
            raise DaemonError(str(exc)) from None
        key, cannot_talk = _api_key(self.cfg)
        if key is not None:
            install_redaction(key, only_existing=True)  # the handler setup_logging made
        if cannot_talk is not None:
            log.error("%s", cannot_talk)

        loop = asyncio.get_running_loop()
        stack = AsyncExitStack()
        try:
            return await self._run(stack, loop, key, cannot_talk)
        finally:
            await self._teardown(stack)

    async def _teardown(self, stack: AsyncExitStack) -> None:
        """Close everything within the shutdown budget; past it, leave the rest to exit."""
        try:
            async with asyncio.timeout(SHUTDOWN_BUDGET_S):
                self.supervisor.stand_down()
                await stack.aclose()
                await self.supervisor.stop(0.2)
        except TimeoutError:
            log.warning("shutdown took longer than %.1f s; exiting anyway", SHUTDOWN_BUDGET_S)

    async def _run(self, stack: AsyncExitStack, loop: asyncio.AbstractEventLoop,
                   key: Secret | None, cannot_talk: str | None) -> int:
        from appliance.audio.capture import Capture
        from appliance.audio.speaker import Player
        from appliance.audio.portaudio_host import PortAudioHost

        # one PortAudio for both devices: a rescan (after an unplug) re-initialises it
        host = self.audio_host or PortAudioHost()
        if self.audio_host is None:
            stack.push_async_callback(host.close_async)  # last: after both streams
        # a device that is missing waits (its watch brings it up) instead of failing the start
        self.player = Player(self.cfg.audio, loop, state_dir=state_dir(self.cfg), host=host,
                             on_presence=self._presence("speaker"))
        await self.player.start_async(allow_missing=True)
        stack.push_async_callback(self.player.close_async)
        from appliance.tools.catalog import registry_for
        from appliance.timers.service import TimerService, TimerStore

        self.timers = TimerService(
            TimerStore.in_dir(state_dir(self.cfg)), self.cfg.timers, loop,
            on_ring=self._timer_rang, on_change=self._timers_changed,
        )
        self._loop = loop
        self.tools = registry_for(self.cfg, self._tool_context(self.cfg))
        self.home = start_home_servers(self.cfg, reserved=self.tools.names)
        if self.home is not None:
            stack.push_async_callback(self.home.close)  # after the session: no call outlives it
        session = self.session = session_from_config(
            self.cfg, key, functions=self.tools.declarations(), google_search=self.cfg.tools.google_search,
            function_source=self.home.declarations if self.home is not None else None,
        )
        stack.push_async_callback(session.close)
        uplink = Uplink(session, self.cfg.audio, self.cfg.vad)
        try:
            leds = self.leds = build_leds(self.cfg.leds, pin_factory=self.pin_factory)
        except LedsError as exc:
            raise DaemonError(str(exc)) from None
        stack.callback(leds.close)
        try:
            # before the first pattern, so a start at night never flashes at full brightness
            self.night = self._night_lights(self.cfg, override=None)
        except NightError as exc:  # load_config checks it; a Config built in code may not be
            raise DaemonError(f"leds.night: {exc}") from None
        self.night.start()
        stack.callback(self._close_night)

        # the tools of this conversation (a reload may bring new ones) in line, a home server's in the background
        router = self.tool_router = ToolRouter(lambda call: self.tools.handle(call), self.home,
                                               session.send_tool_response, lambda: session.profile)
        stack.push_async_callback(router.close)

        def cancel_tools(ids: list[str]) -> list[str]:
            undone = self.tools.cancel(ids)
            return undone + [f"home server call {call_id} cancelled" for call_id in router.cancel(ids)]

        conductor = Conductor(self.cfg, session, uplink, self.player, leds, tool_handler=router,
                              alarms=self.timers, cancel_tools=cancel_tools)
        conductor.on_state = self._on_state
        self.conductor = conductor
        if cannot_talk is not None:
            conductor.cannot_talk(cannot_talk)
        # timers that went off while the daemon was down ring now, network or not
        self.timers.start()
        stack.push_async_callback(self._stop_timers)
        self.capture = Capture(self.cfg.audio, uplink.on_frame, loop, host=host,
                               on_presence=self._presence("microphone"), on_preroll=uplink.on_preroll)
        uplink.attach_gate(self.capture)  # the microphone rests between turns (idle cost, issue #11)
        mute = self.mute = MuteSwitch(MuteStore(state_dir(self.cfg)), self.capture, conductor)
        conductor.on_mute_toggle = lambda: mute.switch(not conductor.muted, "the button was held")
        if not await mute.restore():  # a box muted before this start never opens its microphone
            await self.capture.start_async(allow_missing=True)
        stack.push_async_callback(self.capture.close_async)
        stack.push_async_callback(mute.finish)  # the last mute change reaches the card first
        devices = [("speaker", self.player)] + ([] if mute.mic_closed else [("microphone", self.capture)])
        for kind, device in devices:
            if not device.present:
                conductor.device_changed(kind, False, self._early_absence.get(kind, "not found at start"))
        stack.push_async_callback(conductor.close)

        self._start_button(stack, loop, conductor)
        control = ControlServer(self.control_path, partial(control_command, self))
        try:
            await control.start()
        except ControlError as exc:
            raise DaemonError(str(exc)) from None
        stack.push_async_callback(control.close)

        conductor.start()
        self.supervisor.adopt_all(conductor.tasks)
        self.supervisor.spawn(self.player.watch(), "speaker-watch")
        self.supervisor.spawn(self.capture.watch(), "microphone-watch")
        if self.home is not None:
            self.supervisor.spawn(watch_home_servers(self.home, lambda: self.conductor), "home-servers-watch")
        stack.push_async_callback(self.supervisor.stop, 0.5)  # before the devices close
        sdnotify.ready(conductor.state.value)
        log.info("appliance running; control socket %s", self.control_path)
        interval = sdnotify.watchdog_interval()
        dog_task: asyncio.Task[None] | None = None
        if interval:
            dog = sdnotify.Watchdog(interval, [
                sdnotify.Check("microphone stream or its watch alive", self._capture_alive),
                sdnotify.Check("speaker stream or its watch alive", self._player_alive),
                sdnotify.Check("every long-lived task alive", self.supervisor.alive),
            ])
            # not supervised: if it dies, the missing pings make systemd restart us
            dog_task = loop.create_task(dog.run(), name="watchdog")

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
            stack.callback(loop.remove_signal_handler, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)
        stop = loop.create_task(self._stop.wait(), name="stop-request")
        died = loop.create_task(self.supervisor.failed.wait(), name="task-failure")
        try:
            await asyncio.wait({stop, died}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            died.cancel()
        code = 0
        if self.supervisor.failed.is_set():
            code = EXIT_TASK_DIED
            log.error("stopping: %s", self.supervisor.failure)
            sdnotify.status(f"failed: {self.supervisor.failure}")
        else:
            log.info("stopping")
        if dog_task is not None:  # no watchdog ping may follow STOPPING=1
            dog_task.cancel()
            await asyncio.gather(dog_task, return_exceptions=True)
        self._stopping_sent = True
        sdnotify.stopping()
        return code

    # ------------------------------------------------------------------ reload

    def reload(self) -> Plan | None:
        """Read the config again and apply what may change now (SIGHUP); None when it was refused.

        A config with a mistake changes nothing: one log line with the error the start would
        have printed.  systemd hears RELOADING=1 before and READY=1 after.
        """
        sdnotify.reloading()
        try:
            try:
                new = self.load()
            except ConfigError as exc:
                log.error("config not reloaded, the running settings stay: %s", exc)
                return None
            plan = diff(self.cfg, new)
            self._apply(plan)
            for line in plan.messages():
                log.info("%s", line)
            return plan
        finally:
            sdnotify.ready(self.conductor.state.value if self.conductor is not None else None)

    def _apply(self, plan: Plan) -> None:
        """The LIVE changes now; the NEW_SESSION ones handed to the conductor for its next idle moment."""
        cfg = plan.now
        conductor = self.conductor
        assert conductor is not None
        if plan.touches("log", "level"):
            self._set_log_level(self.cfg.log.level, cfg.log.level)
        if plan.touches("leds", "colors", "idle_brightness"):
            self.leds.use_settings(cfg.leds)
        if plan.touches("leds", "max_brightness", "night", "night_brightness"):
            self._renew_night(cfg)
        if plan.touches("timers"):
            self.timers.use_settings(cfg.timers)
        if plan.touches("vad") or plan.touches("audio", "postroll_silence_ms", "postroll_max_ms"):
            conductor.uplink.use_settings(cfg.audio, cfg.vad)
        if plan.touches("audio", "earcons"):
            self.player.use_settings(cfg.audio)
        if plan.touches("tools", "time_zone") or plan.touches("privacy", "log_transcripts"):
            self.tools.ctx = self._tool_context(cfg)
        self.cfg = cfg
        conductor.use_settings(cfg)
        if plan.new_session:
            later = plan.later
            conductor.new_conversation_when_idle(lambda: self._use_session_settings(later), _NEW_SETTINGS)
        elif conductor.cancel_new_conversation(_NEW_SETTINGS):  # the file is back to the settings in use
            log.info("config reloaded: the new conversation is no longer needed")

    def _use_session_settings(self, cfg: Config) -> None:
        """At the idle moment the conductor chose: the next session's setup, tools and settings."""
        from appliance.tools.catalog import registry_for

        self.tools = registry_for(cfg, self._tool_context(cfg))
        use_for_next_session(self.session, session_settings(
            cfg, functions=self.tools.declarations(), google_search=cfg.tools.google_search,
            function_source=self.home.declarations if self.home is not None else None))
        self.cfg = cfg
        assert self.conductor is not None
        self.conductor.use_settings(cfg)

    def _tool_context(self, cfg: Config) -> Any:
        from appliance.tools.registry import ToolContext

        return ToolContext.from_config(cfg, timers=self.timers, get_volume=lambda: self.player.volume,
                                       set_volume=self.player.set_volume)

    def _night_lights(self, cfg: Config, override: bool | None) -> NightLights:
        """Night mode over the LEDs as `cfg` says; `override` is what `ctl night` set (None: the schedule)."""
        assert self._loop is not None
        return NightLights(
            NightMode(NightWindow.parse(cfg.leds.night), override), self.leds, self._loop,
            day_cap=cfg.leds.max_brightness,
            # night never brightens a box the owner already dimmed
            night_cap=min(cfg.leds.night_brightness, cfg.leds.max_brightness),
        )

    def _renew_night(self, cfg: Config) -> None:
        """New window or caps: night mode starts over with them, keeping what `ctl night` set."""
        old = self.night
        assert old is not None
        old.close()
        self.night = self._night_lights(cfg, old.mode.override)  # load_config checked the window
        self.night.start()

    def _close_night(self) -> None:
        if self.night is not None:
            self.night.close()

    @staticmethod
    def _set_log_level(old: str, new: str) -> None:
        """The new log.level, unless `--log-level` chose the level at the start (it still wins)."""
        root = logging.getLogger()
        if root.level != logging.getLevelName(old.upper()):
            log.info("log.level changed, but --log-level chose the level at the start; it stays")
            return
        root.setLevel(new.upper())
        # as logsetup does: websockets logs every frame at debug, quiet unless debug is asked for
        logging.getLogger("websockets").setLevel(max(root.level, logging.INFO))

    # ------------------------------------------------------------------ wiring

    def _start_button(self, stack: AsyncExitStack, loop: asyncio.AbstractEventLoop, conductor: Conductor) -> None:
        from appliance.hw.button import VirtualButton

        # `appliance ctl press/release/tap` go through the same gesture logic as the pin
        self.virtual_button = VirtualButton(self.cfg.button, loop, conductor.gesture)
        stack.callback(self.virtual_button.close)
        use_keyboard = self.keyboard
        if not use_keyboard and self.cfg.button.enabled:
            from appliance.hw.button import GpioButton

            try:
                button = GpioButton(self.cfg.button, loop, conductor.gesture, pin_factory=self.pin_factory)
                stack.callback(button.close)
            except ButtonError as exc:
                if not sys.stdin.isatty():
                    raise DaemonError(str(exc)) from None
                # a laptop: anyone can try the appliance before wiring anything
                log.warning("%s; using this terminal as the button instead", exc)
                use_keyboard = True
        if use_keyboard:
            from appliance.hw.keyboard import KeyboardButton

            try:
                kb = KeyboardButton(loop, conductor.gesture, printer=self.printer, on_quit=self.request_stop)
            except ButtonError as exc:
                raise DaemonError(str(exc)) from None
            stack.callback(kb.close)
            conductor.on_transcript = self._show_transcript  # the person at the keys sees what was said

    def _show_transcript(self, line: TranscriptLine) -> None:
        """One line per speaker per turn in keyboard mode, escaped: the text is the service's."""
        who = "heard" if line.who == "user" else "answered"
        self.printer(f"{who}: {escape_controls(line.text)}{' (cut short)' if line.interrupted else ''}")

    def _timer_rang(self, timer: Any) -> None:
        if self.conductor is not None:
            self.conductor.timer_rang(timer)

    def _timers_changed(self) -> None:
        if self.conductor is not None:
            self.conductor.alarms_changed()

    async def _stop_timers(self) -> None:
        self.timers.stop()
        await self.timers.flush()

    def _on_state(self, state: State, reason: str) -> None:
        # after STOPPING=1 nothing more is said to systemd (the teardown still moves the state)
        if not self._stopping_sent:
            sdnotify.status(f"{state.value}: {reason}")

    def _capture_alive(self) -> bool:
        """The stream calls back, or it is gone and its watch is waiting for it (not a hang)."""
        return self.capture is not None and self.capture.healthy(AUDIO_ALIVE_S)

    def _player_alive(self) -> bool:
        return self.player is not None and self.player.healthy(AUDIO_ALIVE_S)

    def _presence(self, kind: str) -> Callable[[bool, str], None]:
        """A device's watch reports here; before the conductor exists, why it is missing is kept."""
        def changed(present: bool, reason: str) -> None:
            if self.conductor is not None:
                self.conductor.device_changed(kind, present, reason)
            elif present:
                self._early_absence.pop(kind, None)
            else:
                self._early_absence[kind] = reason
        return changed


async def run_command(cfg: Config, *, keyboard: bool, load: Callable[[], Config] | None = None) -> int:
    """`appliance run`; `load` reads the config again for a reload (default: as `cfg` was read)."""
    daemon = Daemon(cfg, keyboard=keyboard, load=load)
    try:
        return await daemon.run()
    except DaemonError as exc:
        print(f"appliance run: {exc}", file=sys.stderr)
        sdnotify.status(f"cannot start: {exc}")
        return 2


__all__ = ["Daemon", "DaemonError", "Gesture", "run_command"]
