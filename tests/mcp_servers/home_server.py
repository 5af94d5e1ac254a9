"""A small home-automation MCP server for the tests, built with the official `mcp` SDK.

It stands in for Home Assistant's "Model Context Protocol Server": lights that keep their
state, a scene that takes seconds to set, a tool that fails, one that never answers, and a
counter that shows whether the server saw a hung call cancelled.  Two ways to run it (as a subprocess, never imported by
the appliance):

    python home_server.py --stdio
    python home_server.py --fd N --token-file PATH [--legacy]   streamable HTTP on an inherited socket

With --fd the parent has already bound (and perhaps not yet listened on) the socket, so it
knows the port before the server starts and no connection races the start-up.  Every HTTP
request must carry `Authorization: Bearer <token>`; anything else gets a 401.
"""

from __future__ import annotations

import argparse
import hmac
import json
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer

#: the path the streamable HTTP endpoint is served on (Home Assistant uses /api/mcp)
HTTP_PATH = "/api/mcp"


def build_server() -> MCPServer:
    server = MCPServer("test-home")
    lights: dict[str, bool] = {}
    hangs = {"started": 0, "cancelled": 0}

    @server.tool(description="Turn on the lights in an area of the house.")
    def light_on(area: str) -> str:
        lights[area] = True
        # Home Assistant answers with its intent response as JSON text
        return json.dumps({"success": True, "area": area, "state": "on"})

    @server.tool(description="Which lights are on, by area.")
    def light_state() -> dict[str, Any]:
        return {"lights": dict(lights)}

    @server.tool(description="A tool that always fails.")
    def broken() -> str:
        raise RuntimeError("the bulb exploded")

    @server.tool(description="A tool that never answers.")
    async def hang() -> str:
        hangs["started"] += 1
        try:
            await anyio.sleep_forever()
        finally:
            # reached when the client's cancellation interrupts the handler
            hangs["cancelled"] += 1
        return "unreachable"

    @server.tool(description="Set a lighting scene; fading the lights takes a while.")
    async def slow_scene(name: str, seconds: float) -> str:
        await anyio.sleep(min(max(seconds, 0.0), 30.0))
        lights[f"scene:{name}"] = True
        return json.dumps({"success": True, "scene": name, "state": "set"})

    @server.tool(description="How many hang calls started and how many were cancelled.")
    def hang_state() -> dict[str, int]:
        return dict(hangs)

    return server


class BearerGate:
    """ASGI middleware: every HTTP request needs the one bearer token, or it gets a 401.

    With `legacy`, it also answers the 2026 `server/discover` probe with a 400, as a server on
    SDK 1.x does (Home Assistant's, today), so the client has to fall back to `initialize`.
    """

    def __init__(self, app: Any, token: str, *, legacy: bool = False) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.legacy = legacy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers", ())).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _answer(send, 401, {"message": "invalid bearer token"}, [(b"www-authenticate", b"Bearer")])
                return
            if self.legacy and scope["method"] == "POST":
                body = await _whole_body(receive)
                if b'"server/discover"' in body:
                    error = {"code": -32600, "message": "Bad Request: Missing session ID"}
                    await _answer(send, 400, {"jsonrpc": "2.0", "id": "server-error", "error": error})
                    return
                receive = _replaying(body, receive)
        await self.app(scope, receive, send)


async def _answer(send: Any, status: int, payload: dict[str, Any], extra: list[tuple[bytes, bytes]] = []) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _whole_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Any) -> Any:
    """A `receive` that gives the app the body read already, then whatever comes next."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def serve_http(fd: int, token: str, *, legacy: bool) -> None:
    import uvicorn

    sock = socket.socket(fileno=fd)
    app = BearerGate(build_server().streamable_http_app(streamable_http_path=HTTP_PATH), token, legacy=legacy)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    anyio.run(lambda: uvicorn.Server(config).serve(sockets=[sock]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--fd", type=int)
    parser.add_argument("--token-file", type=Path)
    parser.add_argument("--legacy", action="store_true", help="refuse the 2026 discover probe, like SDK 1.x")
    args = parser.parse_args()
    if args.stdio:
        build_server().run("stdio")
    elif args.fd is not None and args.token_file is not None:
        serve_http(args.fd, args.token_file.read_text().strip(), legacy=args.legacy)
    else:
        parser.error("use --stdio, or --fd with --token-file")


if __name__ == "__main__":
    sys.exit(main())
