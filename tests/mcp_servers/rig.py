"""Running the test home server (`home_server.py`) for a test: over HTTP on loopback, or by stdio."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from pathlib import Path

from appliance.app.conductor import State
from appliance.mcp.config import McpServer
from appliance.mcp.manager import UP

SERVER_SCRIPT = Path(__file__).with_name("home_server.py")
HTTP_PATH = "/api/mcp"  # the same as home_server.HTTP_PATH (not imported: that module imports the SDK)


def write_token(path: Path, token: str | None = None) -> str:
    """A fresh bearer token in a mode-600 file; returns the token."""
    token = token or f"tok-{secrets.token_hex(16)}"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


class HttpHomeServer:
    """The server in a subprocess, on a port bound here before it starts.

    Until `start()` the port is bound but not listening, so a connection is refused, as
    with a server that is down.  `start()` listens first and then starts the server on
    that socket: a client that connects meanwhile waits in the backlog, never races it.
    """

    def __init__(self, token_file: Path, *, legacy: bool = False) -> None:
        self.token_file = token_file
        self.legacy = legacy
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{HTTP_PATH}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._sock.listen(16)
        fd = self._sock.fileno()
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--fd", str(fd), "--token-file", str(self.token_file),
             *(["--legacy"] if self.legacy else [])],
            pass_fds=[fd],
        )
        self._sock.close()  # the server holds the socket now; when it ends, connections are refused

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._sock.close()

    def entry(self, name: str = "home", **fields: object) -> McpServer:
        return McpServer(name=name, url=self.url, token_file=str(self.token_file), **fields)  # type: ignore[arg-type]


def stdio_entry(name: str = "desk", **fields: object) -> McpServer:
    """A server the appliance starts itself, talking over the child's stdin and stdout."""
    args = (str(SERVER_SCRIPT), "--stdio")
    return McpServer(name=name, command=sys.executable, args=args, **fields)  # type: ignore[arg-type]


async def until_home_tools_declared(daemon, emu, tool: str) -> None:
    """Every home server up, a session set up with `tool` declared, and the box idle again.

    The servers come up after the first setup, so their tools arrive with the new conversation
    the daemon starts at the next idle moment.
    """
    assert await daemon.home.wait_for(lambda s: all(x.state == UP for x in s), 45)
    await emu.wait_for(lambda e: any(c.setup_complete and tool in str(c.setup) for c in e.connections), 20)
    await daemon.conductor.wait_state(State.IDLE, 10)
