"""The MCP servers of `[mcp]`, each kept connected in the background, and calls to their tools.

One task per server connects, lists the tools and then checks the connection every
`retry_s` (listing again, which also notices a changed list); a server that is down or
refuses the token is tried again every `retry_s`.  Nothing here ever makes the caller
wait for a server: `declarations()` returns the tools of the servers that are up at that
moment, and a session set up while a server is down simply goes without its tools until
the next one.  Each server task is owned here: one that dies by a bug is logged and
started again after a backoff, so one broken server never takes the appliance down.

`call()` forwards a tool call with a timeout and always returns a FunctionResponse
`response`; only cancelling the caller's task ends it otherwise, and that cancels the
request at the server too.  `start_call`/`cancel_calls` do the same by toolCall id.

The SDK (in `appliance.mcp.client`) costs about a second to import, more on a Pi, so
`start()` imports it in a worker thread rather than stalling the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import importlib
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance.live.backoff import Backoff
from appliance.live.messages import OWN_BEHAVIOR as NON_BLOCKING
from appliance.mcp.config import McpServer, McpSettings, load_token
from appliance.mcp.schema_map import Unmappable, assign_names, map_parameters, short_description
from appliance.settings.errors import ConfigError
from appliance.settings.secrets import Secret
from appliance.textsafe import escape_controls, quoted
from appliance.tools.registry import error_payload

if TYPE_CHECKING:
    from types import ModuleType

    from appliance.mcp.client import Connection, RemoteTool

__all__ = [
    "CONNECTING",
    "DOWN",
    "MAX_DECLARATIONS",
    "NOT_INSTALLED",
    "STDIO_START_S",
    "UNAUTHORISED",
    "UP",
    "McpManager",
    "ServerStatus",
    "probe",
]

log = logging.getLogger(__name__)

CONNECTING = "connecting"
UP = "up"
DOWN = "down"
UNAUTHORISED = "unauthorised"

#: tools declared from all servers together; each one costs tokens in every session
MAX_DECLARATIONS = 64
#: what a server's status says when the optional SDK is missing
NOT_INSTALLED = "the mcp package is not installed; install it with: pip install 'appliance[home]'"
#: what a server started by command gets on top of `list_timeout_s` to start (a Python
#: server built on the SDK takes a second or two here, several on a Pi)
STDIO_START_S = 30.0
_CLIENT_MODULE = "appliance.mcp.client"
_STOP_TIMEOUT_S = 6.0  # a stdio server gets 2 s to exit, then SIGTERM and 2 s more


@dataclass(frozen=True)
class ServerStatus:
    """One server as `ctl status` and `doctor` show it."""

    name: str
    transport: str
    target: str
    state: str
    tools: int = 0
    error: str | None = None

    def line(self) -> str:
        """"home (http://ha.local:8123/api/mcp): up, 12 tools" and the like."""
        text = f"{self.name} ({escape_controls(self.target[:120])}): {self.state}"
        if self.state == UP:
            text += f", {self.tools} tool{'s' if self.tools != 1 else ''}"
        return f"{text}: {self.error}" if self.error else text


@dataclass(frozen=True)
class _Offered:
    """A tool of a server that is up, mapped for the Live API but not yet named."""

    tool: str
    description: str
    parameters: dict[str, Any] | None


@dataclass(frozen=True)
class _Route:
    server: str
    tool: str
    #: as declared to the model (its behavior decides whether the model waits for the answer)
    declaration: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Link:
    """What the manager knows about one server while it runs."""

    server: McpServer
    state: str = CONNECTING
    error: str | None = None
    connection: Connection | None = None
    offered: tuple[_Offered, ...] = ()
    #: the tools of the last listing, kept while the server is down (for stable names)
    seen: tuple[_Offered, ...] = ()
    #: set to check the connection now instead of at the next `retry_s`
    check: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    restart: asyncio.TimerHandle | None = None
    restarts: Backoff = field(default_factory=Backoff)


class McpManager:
    """See the module docstring.  Build it, `start()` it in the loop, `close()` it at the end."""

    def __init__(
        self,
        settings: McpSettings,
        *,
        reserved: Collection[str] = (),
        log_args: bool = False,
        client_module: str = _CLIENT_MODULE,
    ) -> None:
        self.settings = settings
        #: names the device's own tools use; a server tool with one of them gets a prefix
        self.reserved = frozenset(reserved)
        self.log_args = log_args
        self._client_module = client_module
        self._links = {s.name: _Link(s, restarts=Backoff(base_s=1.0, cap_s=settings.retry_s)) for s in settings.servers}
        self._routes: dict[str, _Route] = {}
        self._calls: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._boot: asyncio.Task[None] | None = None
        self._closing = False
        self._told_cap = False
        self._change = asyncio.Event()

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Begin connecting in the background (in a running loop); returns at once."""
        if self._boot is None and self._links:
            self._boot = asyncio.get_running_loop().create_task(self._start_servers(), name="mcp-start")

    async def close(self) -> None:
        """Cancel the calls in flight and disconnect every server (stdio servers are stopped)."""
        self._closing = True
        tasks: list[asyncio.Task[Any]] = [t for t in (self._boot,) if t is not None]
        for link in self._links.values():
            if link.restart is not None:
                link.restart.cancel()
            if link.task is not None:
                tasks.append(link.task)
            link.connection = None
        tasks.extend(self._calls.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=_STOP_TIMEOUT_S)
            for task in still:
                log.warning("MCP task %s did not stop within %.0f s", task.get_name(), _STOP_TIMEOUT_S)

    # ------------------------------------------------------------------ what the session sees

    def declarations(self) -> tuple[dict[str, Any], ...]:
        """Function declarations for the tools of the servers up now; never waits.

        Also fixes the names `call()` accepts until the next call of this method, so a
        session's calls go where its setup said even if a server came or went since.
        """
        offered = [(link, tool) for link in self._links.values() if link.state == UP for tool in link.offered]
        if len(offered) > MAX_DECLARATIONS:
            if not self._told_cap:
                log.warning("MCP servers offer %d tools; declaring the first %d (use include/exclude to choose)",
                            len(offered), MAX_DECLARATIONS)
                self._told_cap = True
            offered = offered[:MAX_DECLARATIONS]
        # named over every tool seen from every server, up or not, so that a server coming
        # back does not rename another's tools between sessions
        seen = [(link.server.name, tool.tool) for link in self._links.values() for tool in link.seen]
        names = assign_names(seen, self.reserved)
        routes: dict[str, _Route] = {}
        declarations = []
        for link, tool in offered:
            name = names[(link.server.name, tool.tool)]
            declaration: dict[str, Any] = {"name": name, "description": tool.description}
            if tool.parameters is not None:
                declaration["parameters"] = copy.deepcopy(tool.parameters)
            if link.server.slow(tool.tool):
                declaration["behavior"] = NON_BLOCKING  # kept only where the model allows it
            declarations.append(declaration)
            routes[name] = _Route(link.server.name, tool.tool, declaration)
        self._routes = routes
        return tuple(declarations)

    def handles(self, name: str) -> bool:
        """Whether `name` is one of the MCP tools of the last `declarations()`."""
        return name in self._routes

    def declaration(self, name: str) -> Mapping[str, Any]:
        """The declaration `name` had in the last `declarations()` (empty when it had none)."""
        route = self._routes.get(name)
        return route.declaration if route is not None else {}

    async def call(self, name: str, arguments: Any, timeout_s: float | None = None) -> dict[str, Any]:
        """The tool's answer, or `{"error": ...}` for a failure or a timeout; never raises.

        Cancelling the awaiting task is the one way out besides an answer: it cancels the
        request at the server and re-raises CancelledError.
        """
        route = self._routes.get(name)
        if route is None:
            return error_payload("unknown_function", f"there is no function {name!r} from a home server")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            return error_payload("bad_arguments", "arguments must be an object")
        link = self._links[route.server]
        connection = link.connection
        if connection is None:
            return error_payload("unavailable", f"{route.server} is not reachable right now; try again later",
                                 retryable=True)
        limit = timeout_s if timeout_s is not None else self.settings.call_timeout_s
        shown = f"{route.server}/{quoted(route.tool, 64)}"
        if self.log_args:
            shown += f" {quoted(dict(arguments), 200)}"
        try:
            async with asyncio.timeout(limit):
                response = await connection.call(route.tool, arguments)
        except TimeoutError:
            log.warning("MCP tool %s: no answer within %g s", shown, limit)
            link.check.set()
            return error_payload("timeout", f"{route.server} did not answer within {limit:g} s", retryable=True)
        except asyncio.CancelledError:
            log.info("MCP tool %s: cancelled", shown)
            raise
        except Exception as exc:
            problem = self._client().describe_failure(exc)
            log.warning("MCP tool %s failed: %s", shown, problem)
            link.check.set()  # the connection may be gone: find out now, not at the next check
            return error_payload("unavailable", f"{route.server}: {problem}", retryable=True)
        log.info("MCP tool %s -> %s", shown, "error" if "error" in response else "ok")
        return response

    def start_call(self, call_id: str, name: str, arguments: Any, *,
                   waited_for: bool = True) -> asyncio.Task[dict[str, Any]]:
        """`call()` in a task of its own, remembered by the toolCall id until it ends.

        A call the model is not waiting for (it went out NON_BLOCKING) gets `non_blocking_timeout_s`
        rather than `call_timeout_s`: it holds up no conversation.
        """
        limit = self.settings.call_timeout_s if waited_for else self.settings.non_blocking_timeout_s
        task = asyncio.get_running_loop().create_task(self.call(name, arguments, limit), name=f"mcp-call-{call_id}")
        self._calls[call_id] = task
        task.add_done_callback(functools.partial(self._call_ended, call_id))
        return task

    def _call_ended(self, call_id: str, task: asyncio.Task[dict[str, Any]]) -> None:
        if self._calls.get(call_id) is task:  # a later call may have reused the id
            del self._calls[call_id]

    def cancel_calls(self, ids: Collection[str]) -> list[str]:
        """Cancel the named calls still in flight (a toolCallCancellation); returns their ids."""
        cancelled = []
        for call_id in ids:
            task = self._calls.get(call_id)
            if task is not None and not task.done():
                task.cancel()
                cancelled.append(call_id)
        return cancelled

    # ------------------------------------------------------------------ what ctl and doctor see

    def status(self) -> tuple[ServerStatus, ...]:
        return tuple(_status(link) for link in self._links.values())

    async def wait_for(self, predicate: Callable[[tuple[ServerStatus, ...]], bool], timeout_s: float) -> bool:
        """Wait until `predicate(self.status())` holds; False when `timeout_s` passes first."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    change = self._change
                    if predicate(self.status()):
                        return True
                    await change.wait()
        except TimeoutError:
            return False

    # ------------------------------------------------------------------ the server tasks

    async def _start_servers(self) -> None:
        try:
            await asyncio.to_thread(importlib.import_module, self._client_module)
        except ImportError as exc:
            log.error("MCP servers are configured but %s (%s)", NOT_INSTALLED, quoted(str(exc), 120))
            for link in self._links.values():
                self._set(link, DOWN, NOT_INSTALLED)
            return
        for link in self._links.values():
            self._spawn(link)

    def _client(self) -> ModuleType:
        return importlib.import_module(self._client_module)

    def _spawn(self, link: _Link) -> None:
        link.restart = None
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._serve(link), name=f"mcp-{link.server.name}")
        link.task = task
        task.add_done_callback(functools.partial(self._ended, link))

    def _ended(self, link: _Link, task: asyncio.Task[None]) -> None:
        """The owner's watch: a server task never ends by itself, so an end is a bug; restart it."""
        if self._closing or task.cancelled():
            return
        exc = task.exception()
        delay = link.restarts.next_delay()
        log.error("MCP server %s: its task ended (%s); starting it again in %.1f s", link.server.name,
                  type(exc).__name__ if exc else "returned", delay, exc_info=exc)
        link.connection = None
        self._set(link, DOWN, f"internal error ({type(exc).__name__ if exc else 'task ended'}); restarting")
        link.restart = asyncio.get_running_loop().call_later(delay, self._spawn, link)

    async def _serve(self, link: _Link) -> None:
        client = self._client()
        server = link.server
        while True:
            try:
                token = _token(server)
                async with client.connect(server, token, _connect_timeout(server, self.settings)) as connection:
                    self._up(link, connection)
                    why = await self._keep(link, connection)
                    link.connection = None
                self._set(link, DOWN, why)
            except asyncio.CancelledError:
                link.connection = None
                raise
            except Exception as exc:
                link.connection = None
                self._set(link, *_failure(server, exc, client))
            link.check.clear()
            await asyncio.sleep(self.settings.retry_s)

    async def _keep(self, link: _Link, connection: Connection) -> str:
        """Check the connection every `retry_s` (or when poked); returns why it was given up."""
        client = self._client()
        while True:
            try:
                await asyncio.wait_for(link.check.wait(), self.settings.retry_s)
            except TimeoutError:
                pass
            link.check.clear()
            try:
                async with asyncio.timeout(self.settings.list_timeout_s):
                    tools = await connection.list_tools()
            except Exception as exc:
                return f"lost the connection: {client.describe_failure(exc)}"
            offered = _offer(link.server, tools, notes=logging.DEBUG)  # said at connection already
            if offered != link.offered:
                link.offered = link.seen = offered
                log.info("MCP server %s now offers %d tools (from the next session)", link.server.name, len(offered))
                self._changed()

    def _up(self, link: _Link, connection: Connection) -> None:
        link.connection = connection
        link.offered = link.seen = _offer(link.server, connection.tools)
        link.restarts.reset()
        left_out = len(connection.tools) - len(link.offered)
        extra = f" ({left_out} left out)" if left_out else ""
        log.info("MCP server %s is up: %d tools%s", link.server.name, len(link.offered), extra)
        self._set(link, UP, None, quiet=True)

    def _set(self, link: _Link, state: str, error: str | None, *, quiet: bool = False) -> None:
        if (state, error) == (link.state, link.error):
            log.debug("MCP server %s: still %s", link.server.name, state)
            return
        if state != UP:
            link.offered = ()
        link.state, link.error = state, error
        if not quiet:
            when = f"; trying again every {self.settings.retry_s:g} s" if state != UP else ""
            log.warning("MCP server %s is %s: %s%s", link.server.name, state, error, when)
        self._changed()

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()


async def probe(server: McpServer, list_timeout_s: float) -> ServerStatus:
    """Connect once, list the tools and disconnect: `appliance doctor`'s check of one server."""
    link = _Link(server)
    try:
        client = importlib.import_module(_CLIENT_MODULE)
    except ImportError:
        return _status(link, DOWN, NOT_INSTALLED)
    try:
        token = _token(server)
        timeout_s = _connect_timeout(server, McpSettings(list_timeout_s=list_timeout_s))
        async with client.connect(server, token, timeout_s) as connection:
            offered = _offer(server, connection.tools)
    except Exception as exc:
        return _status(link, *_failure(server, exc, client))
    return ServerStatus(server.name, server.transport, server.target, UP, len(offered))


def _offer(server: McpServer, tools: tuple[RemoteTool, ...], notes: int = logging.INFO) -> tuple[_Offered, ...]:
    """The tools `include`/`exclude` let through that can be declared, mapped."""
    offered = []
    names: set[str] = set()
    for tool in tools:
        if tool.name in names or not server.wants(tool.name):
            continue
        names.add(tool.name)
        try:
            mapped = map_parameters(tool.input_schema)
        except Unmappable as exc:
            log.log(notes, "MCP server %s: tool %s is not offered: %s", server.name, quoted(tool.name, 64), exc)
            continue
        if mapped.dropped:
            log.debug("MCP server %s: tool %s declared without %s", server.name, quoted(tool.name, 64),
                      quoted("; ".join(mapped.dropped), 300))
        offered.append(_Offered(tool.name, short_description(tool.description), mapped.parameters))
    return tuple(offered)


def _token(server: McpServer) -> Secret | None:
    """The server's token, read again at each connection so that a new one needs no restart."""
    return load_token(server.token_file, f"mcp server {server.name}: token_file") if server.token_file else None


def _connect_timeout(server: McpServer, settings: McpSettings) -> float:
    """`list_timeout_s`, and for a server started here the time a program needs to start."""
    return settings.list_timeout_s + (STDIO_START_S if server.command else 0.0)


def _status(link: _Link, state: str | None = None, error: str | None = None) -> ServerStatus:
    server = link.server
    state = state or link.state
    tools = len(link.offered) if state == UP else 0
    return ServerStatus(server.name, server.transport, server.target, state, tools, error or link.error)


def _failure(server: McpServer, exc: BaseException, client: ModuleType) -> tuple[str, str]:
    """The state and the one line a failed connection attempt leaves."""
    if isinstance(exc, client.Unauthorised):
        if server.token_file:
            return UNAUTHORISED, (f"the server refused the token in {server.token_file} ({exc}); "
                                  "put a valid access token there")
        return UNAUTHORISED, f"the server wants a token ({exc}); set token_file for this server"
    if isinstance(exc, ConfigError):
        return DOWN, str(exc)
    if isinstance(exc, TimeoutError):
        return DOWN, "no answer while connecting and listing the tools"
    return DOWN, client.describe_failure(exc)
