"""Tool-call bookkeeping: which function calls are out, which answers they still wait for, which are cut.

Sans I/O: the reply player sends ``toolCall`` and ``toolCallCancellation`` messages; this module decides
what goes in them and checks every ``toolResponse`` against the calls still pending, refusing (1007) an
answer to a call that is unknown, already answered or cancelled.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from appliance.emulator.model_rules import ModelRules
from appliance.emulator.records import TurnRecord
from appliance.emulator.rejections import INVALID_ARGUMENT, invalid
from appliance.emulator.setup_message import DeclaredTools

__all__ = ["PendingCall", "ToolCalls", "ToolRound", "behavior_of"]

Behavior = Literal["BLOCKING", "NON_BLOCKING"]


@dataclass
class ToolRound:
    """The function calls one turn made, and where that turn stands in waiting for their answers."""

    turn: TurnRecord
    calls: list[dict[str, Any]]  # {"id", "name", "args"} as sent
    non_blocking: bool
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    #: a NON_BLOCKING turn has ended its first part (IN_PROGRESS) and speaks again once answered
    awaiting: bool = False
    #: every final answer asked for scheduling SILENT: take the result without speaking
    silent: bool = True

    @property
    def ids(self) -> list[str]:
        return [str(call["id"]) for call in self.calls]


@dataclass
class PendingCall:
    name: str
    turn: TurnRecord
    round: ToolRound

    @property
    def answered(self) -> asyncio.Event:
        return self.round.answered


def behavior_of(name: str, rules: ModelRules, tools: DeclaredTools, non_blocking_tools: bool) -> Behavior:
    """How the model schedules a call: the declaration if it says, else the scenario or model default."""
    if not rules.non_blocking_calls:
        return "BLOCKING"
    declared = tools.behaviors.get(name)
    if declared is None:
        declared = "NON_BLOCKING" if non_blocking_tools else rules.default_behavior
    return "NON_BLOCKING" if declared == "NON_BLOCKING" else "BLOCKING"


class ToolCalls:
    """The calls of one connection that wait for an answer, by call id."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingCall] = {}

    def open_round(self, turn: TurnRecord, scripted: Iterable[tuple[str, dict[str, Any]]], tools: DeclaredTools,
                   *, rules: ModelRules, non_blocking_tools: bool) -> ToolRound | None:
        """The calls the scenario scripts for ``turn``, as one round; None when none is declared.

        A real model never calls an undeclared function: those are skipped (and recorded as skipped).
        One toolCall message goes per turn; if any call in it is BLOCKING, the model waits for all of them.
        """
        calls: list[dict[str, Any]] = []
        for name, args in scripted:
            if name not in tools.names:
                turn.skipped_tool_calls.append(name)
                continue
            calls.append({"id": f"fc-{uuid.uuid4().hex[:12]}", "name": name, "args": args})
        if not calls:
            return None
        non_blocking = all(behavior_of(str(call["name"]), rules, tools, non_blocking_tools) == "NON_BLOCKING"
                           for call in calls)
        tool_round = ToolRound(turn, calls, non_blocking)
        for call in calls:
            self._pending[str(call["id"])] = PendingCall(str(call["name"]), turn, tool_round)
        turn.tool_calls.extend(calls)
        turn.tool_behavior = "NON_BLOCKING" if non_blocking else "BLOCKING"
        return tool_round

    def accept(self, responses: list[dict[str, Any]]) -> list[ToolRound]:
        """Take one toolResponse's answers; return the rounds that are now fully answered.

        Every answer is checked before any is taken, so a bad one leaves the pending calls as they were.
        """
        if not responses:
            raise invalid(f"{INVALID_ARGUMENT} toolResponse.functionResponses is empty.")
        seen: set[str] = set()
        for index, response in enumerate(responses):
            where = f"toolResponse.functionResponses[{index}]"
            call_id = response.get("id")
            if not call_id:
                raise invalid(f"{INVALID_ARGUMENT} {where}.id is required on the Gemini API.")
            call = self._pending.get(call_id)
            if call is None or call_id in seen:
                raise invalid(f"{where}.id {json.dumps(call_id)[:40]} is not a pending function call "
                              "(unknown, answered or cancelled).")
            if response.get("name") != call.name:
                raise invalid(f"{where}.name {json.dumps(response.get('name'))[:30]} does not match the call's "
                              f"name {json.dumps(call.name)[:30]}.")
            seen.add(call_id)
        finished: list[ToolRound] = []
        for response in responses:
            call = self._pending[response["id"]]
            call.turn.tool_responses.append(response)
            if call.round.non_blocking and response.get("willContinue") is True:
                continue  # more answers to this call will follow; it stays pending
            del self._pending[response["id"]]
            if response.get("scheduling") != "SILENT":
                call.round.silent = False
            if not any(other.round is call.round for other in self._pending.values()):
                if call.round not in finished:
                    finished.append(call.round)
        return finished

    def cancel_blocking(self, turn: TurnRecord) -> list[str]:
        """Barge-in: drop the BLOCKING calls of ``turn`` (their waits end); return their ids."""
        cancelled = [call_id for call_id, call in self._pending.items()
                     if call.turn is turn and not call.round.non_blocking]
        for call_id in cancelled:
            self._pending.pop(call_id).answered.set()
        return cancelled

    def round_still_running(self, turn: TurnRecord) -> ToolRound | None:
        """The round of ``turn`` that still waits for answers (a NON_BLOCKING one after a barge-in)."""
        return next((call.round for call in self._pending.values() if call.turn is turn), None)

    def release_all(self) -> None:
        """The connection ended: nothing will be answered any more; wake every wait."""
        for call in self._pending.values():
            call.answered.set()
        self._pending.clear()
