"""One connection to one MCP server, through the official `mcp` SDK.

The only module that imports the SDK (the optional extra `appliance[home]`).  `connect`
opens a session over streamable HTTP (with the bearer token from `token_file`) or over a
child process's stdio, lists the server's tools and yields a `Connection`; the caller's
task must stay inside it for the connection's life, because the SDK's task groups belong
to the task that entered them.  Calls may come from any task of the same loop.

The token goes only into the HTTP client's default headers.  Neither the SDK nor httpx
logs request headers, and nothing here logs the client or its headers; a test captures
every logger at DEBUG to keep it so.  A 401 or 403 from the server is told apart from
other failures by watching the responses' status codes, because the SDK turns them into
a generic error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from appliance.mcp.config import McpServer
from appliance.settings.secrets import Secret
from appliance.textsafe import escape_controls
from appliance.tools.registry import error_payload

__all__ = [
    "MAX_RESULT_CHARS",
    "Connection",
    "HttpRefused",
    "RemoteTool",
    "Unauthorised",
    "connect",
    "describe_failure",
    "result_payload",
]

log = logging.getLogger(__name__)

#: a tool result longer than this (as JSON) reaches the model cut, as text
MAX_RESULT_CHARS = 16000
#: pages of a tool listing read at most, and tools kept from one server
_MAX_PAGES = 10
_MAX_TOOLS = 128
#: the HTTP client's read timeout: the server may hold its event stream open this long
_STREAM_READ_TIMEOUT_S = 300.0
_MAX_ERROR_CHARS = 200


@dataclass(frozen=True)
class RemoteTool:
    """A tool as the server listed it."""

    name: str
    description: str
    input_schema: Mapping[str, Any] | None


class Unauthorised(Exception):
    """The server refused the token (HTTP 401 or 403)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class HttpRefused(Exception):
    """The server answered the connection with another HTTP error (404: a wrong path, say)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the server answered HTTP {status}" + (" (is the path right?)" if status == 404 else ""))
        self.status = status


class Connection:
    """A session that is up: its tools, and calls to them."""

    def __init__(self, client: Client, tools: tuple[RemoteTool, ...]) -> None:
        self._client = client
        self.tools = tools

    @property
    def protocol_version(self) -> str:
        """The MCP revision agreed on (Home Assistant's server speaks a handshake-era one)."""
        return self._client.protocol_version

    async def call(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The tool's answer as a FunctionResponse `response`; raises when the link fails.

        A tool that reports an error is an answer (`{"error": ...}`), not an exception.
        Cancelling the awaiting task cancels the request at the server.
        """
        result = await self._client.call_tool(name, dict(arguments))
        return result_payload(result)

    async def list_tools(self) -> tuple[RemoteTool, ...]:
        """The tools, listed again (the health check, and how a changed list is noticed)."""
        self.tools = await _list_tools(self._client)
        return self.tools


@asynccontextmanager
async def connect(server: McpServer, token: Secret | None, timeout_s: float) -> AsyncIterator[Connection]:
    """A connection with the tools listed, or an exception within `timeout_s`.

    Raises Unauthorised when the server answered 401/403, HttpRefused for another HTTP
    error, else whatever the transport raised (`describe_failure` makes a line of it).
    """
    # the status of the last HTTP response: a legacy server refuses the SDK's first probe
    # with a 4xx and then accepts the older handshake, so only the last answer says why
    last_status: list[int] = []
    async with AsyncExitStack() as stack:
        try:
            async with asyncio.timeout(timeout_s):
                client = await stack.enter_async_context(_client_for(server, token, last_status, stack))
                tools = await _list_tools(client)
        except Exception:
            status = last_status[-1] if last_status else 0
            if status in (401, 403):
                raise Unauthorised(status) from None
            if status >= 400:
                raise HttpRefused(status) from None
            raise
        yield Connection(client, tools)


def _client_for(server: McpServer, token: Secret | None, last_status: list[int], stack: AsyncExitStack) -> Client:
    if not server.url:
        return Client(StdioServerParameters(command=server.command, args=list(server.args)))

    async def note_status(response: httpx2.Response) -> None:
        last_status[:] = [response.status_code]

    headers = {"Authorization": f"Bearer {token.reveal()}"} if token is not None else {}
    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(30.0, read=_STREAM_READ_TIMEOUT_S),
        event_hooks={"response": [note_status]},
    )
    stack.push_async_callback(http.aclose)
    return Client(streamable_http_client(server.url, http_client=http))


async def _list_tools(client: Client) -> tuple[RemoteTool, ...]:
    tools: list[RemoteTool] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await client.list_tools(cursor=cursor, cache_mode="refresh")
        for tool in page.tools:
            tools.append(RemoteTool(tool.name, tool.description or "", tool.input_schema))
        cursor = page.next_cursor
        if cursor is None or len(tools) >= _MAX_TOOLS:
            break
    return tuple(tools[:_MAX_TOOLS])


# --------------------------------------------------------------------------- results


def result_payload(result: Any) -> dict[str, Any]:
    """A `CallToolResult` as `{"output": ...}` or `{"error": ...}` for the model.

    Structured content wins; otherwise the text, parsed when it is one JSON value (Home
    Assistant answers in JSON text).  Images, audio and resources are named, not sent.
    """
    texts: list[str] = []
    other: list[str] = []
    for block in result.content or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            texts.append(block.text)
        else:
            other.append(str(kind) or "unknown")
    text = "\n".join(texts)
    if result.is_error:
        return error_payload("tool_failed", text or "the tool failed without saying why")
    output: Any = result.structured_content
    # the SDK's own servers wrap a plain return value as {"result": <the same text>}
    if isinstance(output, dict) and list(output) == ["result"] and output["result"] == text:
        output = None
    if output is None:
        output = _parsed(text) if text else {"status": "done"}
    if other:
        if not isinstance(output, dict):
            output = {"result": output}
        output = {**output, "not_shown": f"{', '.join(other)} content the device cannot pass on"}
    return {"output": _bounded(output)}


def _parsed(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": text}
    return value if isinstance(value, (dict, list)) else {"text": text}


def _bounded(output: Any) -> Any:
    encoded = json.dumps(output, ensure_ascii=False)
    if len(encoded) <= MAX_RESULT_CHARS:
        return output
    return {"text": encoded[:MAX_RESULT_CHARS], "truncated": f"the answer was {len(encoded)} characters; cut"}


# --------------------------------------------------------------------------- failures


def describe_failure(exc: BaseException) -> str:
    """One escaped line saying why a connection or call failed, for status and logs."""
    leaf = _leaf(exc)
    reason = _os_reason(leaf)
    if isinstance(leaf, TimeoutError):
        text = "no answer in time"
    elif isinstance(leaf, httpx2.ConnectError):
        text = f"cannot connect: {reason or leaf or 'connection failed'}"
    elif isinstance(leaf, httpx2.HTTPError):
        text = f"HTTP failure: {reason or leaf or type(leaf).__name__}"
    elif isinstance(leaf, HttpRefused):
        text = str(leaf)
    elif isinstance(leaf, MCPError):
        text = f"MCP error: {leaf.message}"
    elif isinstance(leaf, FileNotFoundError):
        text = f"cannot start the command: {reason or 'not found'}"
    elif reason:
        text = reason
    else:
        text = f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__
    line = escape_controls(" ".join(text.split()))
    return line if len(line) <= _MAX_ERROR_CHARS else line[: _MAX_ERROR_CHARS - 3] + "..."


def _os_reason(exc: BaseException) -> str:
    """The operating system's words ("Connection refused") from `exc` or what caused it."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, OSError) and (current.errno or current.strerror):
            # asyncio words a refused connection "Connect call failed (...)"; errno says more
            return os.strerror(current.errno) if current.errno else str(current.strerror)
        current = current.__cause__ or current.__context__
        seen += 1
    return ""


def _leaf(exc: BaseException) -> BaseException:
    """The first real failure inside nested exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc
