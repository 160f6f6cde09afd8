"""A minimal Debug Adapter Protocol client, as VS Code speaks it to debugpy: enough to attach, set a breakpoint,
see where the debuggee stopped, and let it go on."""

from __future__ import annotations

import json
import socket
import time


class DapClient:
    def __init__(self, host: str, port: int, connect_timeout_s: float = 60.0):
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(None)
        self.buffer = b""
        self.seq = 0
        self.events: list[dict] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, command: str, **arguments) -> int:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command, "arguments": arguments}).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self.seq

    def _read_message(self, timeout_s: float) -> dict:
        self.sock.settimeout(timeout_s)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        header, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        length = int(next(h for h in header.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return json.loads(body)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the debug adapter closed the connection")
        self.buffer += chunk

    def wait_for(self, matches, timeout_s: float = 60.0) -> dict:
        """The first message (seen before or arriving now) for which `matches(message)` is true."""
        for message in self.events:
            if matches(message):
                self.events.remove(message)
                return message
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._read_message(max(0.1, deadline - time.monotonic()))
            if matches(message):
                return message
            self.events.append(message)

    def request(self, command: str, timeout_s: float = 60.0, **arguments) -> dict:
        seq = self.send(command, **arguments)
        response = self.wait_for(lambda m: m.get("type") == "response" and m.get("request_seq") == seq, timeout_s)
        assert response["success"], response
        return response

    def event(self, name: str, timeout_s: float = 60.0) -> dict:
        return self.wait_for(lambda m: m.get("type") == "event" and m.get("event") == name, timeout_s)
