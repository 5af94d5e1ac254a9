"""Which tool answers a `toolCall`: the device's own at once, a home server's (MCP) in the background.

The device's tools (timers, volume, the time) answer in microseconds, so the conductor awaits
them in line. A Home Assistant light may take seconds, or never answer: awaiting it there would
stall every other server event (the reply's audio, the next turn). So an MCP call runs in a task
of its own, owned here, and its `toolResponse` goes out, with the call's id, when it finishes;
`call_timeout_s` (in the MCP manager) bounds it, and a `toolCallCancellation` cancels it at the
server. A response for a connection that has closed meanwhile is dropped by the session, as the
service would refuse its id.

A tool the owner listed as `non_blocking` goes out NON_BLOCKING where the model allows it: the
model does not wait (it says it is on it and talks on), so the call gets the longer
`non_blocking_timeout_s`, and its answer asks for scheduling WHEN_IDLE: the result is told when
nobody is talking, rather than cutting into the model's own sentence (INTERRUPT) or never (SILENT).
Where the model has synchronous calls only, the same tool is an ordinary call. On a model whose
calls are all asynchronous (3.8 extended thinking: its profile makes every declaration
NON_BLOCKING) every home call is such a background call, listed or not: the model is not waiting
for any of them, so none needs the short limit. Which one a call is comes from
`messages.effective_behavior`, the rule the setup's declarations were built by.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from appliance.live import messages as p
from appliance.live.profiles import ModelProfile

__all__ = ["RemoteTools", "ToolRouter"]

log = logging.getLogger(__name__)

#: how the answer of a call the model did not wait for is told: when nobody is talking
WHEN_IDLE = "WHEN_IDLE"


class RemoteTools(Protocol):
    """What the router needs of `appliance.mcp.manager.McpManager`."""

    def handles(self, name: str) -> bool: ...
    def declaration(self, name: str) -> Mapping[str, Any]: ...
    def start_call(self, call_id: str, name: str, arguments: Any, *,
                   waited_for: bool = True) -> asyncio.Task[dict[str, Any]]: ...
    def cancel_calls(self, ids: Sequence[str]) -> list[str]: ...


class ToolRouter:
    """Answers device tools in line and MCP tools when they finish; see the module docstring."""

    def __init__(
        self,
        device: Callable[[p.ToolCall], list[p.FunctionResponse]],
        remote: RemoteTools | None,
        send: Callable[[list[p.FunctionResponse]], Awaitable[Any]],
        profile: Callable[[], ModelProfile],
    ) -> None:
        self._device = device
        self._profile = profile  # the model of the session the calls come from
        self.remote = remote
        self._send = send
        self._sending: set[asyncio.Task[Any]] = set()
        self.closed = False

    async def __call__(self, call: p.ToolCall) -> list[p.FunctionResponse]:
        """The device's answers now; each remote call answered later by its own task."""
        remote = self.remote
        local: list[p.FunctionCall] = []
        for fc in call.calls:
            if remote is None or not fc.id or not remote.handles(fc.name):
                local.append(fc)  # a call without an id is the device registry's to refuse and log
            elif getattr(fc, "problem", None):
                local.append(fc)  # unreadable arguments: the registry answers with the error
            else:
                self._start(remote, fc)
        return self._device(p.ToolCall(calls=tuple(local))) if local else []

    def cancel(self, ids: Sequence[str]) -> list[str]:
        """Cancel remote calls still running (a toolCallCancellation); returns their ids."""
        return self.remote.cancel_calls(ids) if self.remote is not None else []

    async def close(self) -> None:
        """Stop sending: answers still being written are cancelled."""
        self.closed = True
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    def _start(self, remote: RemoteTools, fc: p.FunctionCall) -> None:
        assert fc.id is not None
        background = p.effective_behavior(remote.declaration(fc.name), self._profile()) == p.OWN_BEHAVIOR
        task = remote.start_call(fc.id, fc.name, fc.args, waited_for=not background)
        task.add_done_callback(lambda done: self._finished(fc, done, background))

    def _finished(self, fc: p.FunctionCall, task: asyncio.Task[dict[str, Any]], background: bool) -> None:
        if task.cancelled() or self.closed:
            return  # cancelled by the service (it no longer wants the answer) or by shutdown
        exc = task.exception()
        if exc is not None:  # the manager never raises; should it, the model still hears back
            log.error("the home server call %s (%s) failed: %s", fc.id, fc.name, type(exc).__name__)
            result: dict[str, Any] = {"error": {"code": "internal", "message": "the call failed on the device"}}
        else:
            result = task.result()
        assert fc.id is not None
        sending = asyncio.get_running_loop().create_task(
            self._answer(p.FunctionResponse(fc.id, fc.name, result, scheduling=WHEN_IDLE if background else None)),
            name=f"tool-response-{fc.id}")
        self._sending.add(sending)
        sending.add_done_callback(self._sent)

    async def _answer(self, response: p.FunctionResponse) -> None:
        await self._send([response])

    def _sent(self, task: asyncio.Task[Any]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sending a home server's answer failed: %s", task.exception())
