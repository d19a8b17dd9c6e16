"""Where alerts go in tests: a local webhook receiver and a local SMTP server (aiosmtpd), both on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from dev.broker import free_port


class WebhookReceiver:
    """An HTTP server on a free loopback port that records every POSTed JSON body.

    ``statuses``: the answers to give, in order (then 200 for the rest).
    ``gate``: when set (an Event that is not set), the first request waits
    until it is set: a webhook that hangs.
    """

    def __init__(self, statuses: tuple[int, ...] = (), *, gate: threading.Event | None = None) -> None:
        self.statuses = list(statuses)
        self.gate = gate
        self.bodies: list[dict[str, Any]] = []  # every request, answered or not
        self.answers: list[int] = []  # what each was answered
        self.waiting = threading.Event()  # the gated request has arrived
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.bodies.append(json.loads(body))
                    first = len(receiver.bodies) == 1
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if first and receiver.gate is not None:
                    receiver.waiting.set()
                    receiver.gate.wait(30)
                with receiver._lock:
                    receiver.answers.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def ok(self) -> list[dict[str, Any]]:
        """The bodies answered 2xx."""
        with self._lock:
            return [b for b, s in zip(self.bodies, self.answers, strict=False) if 200 <= s < 300]


class SmtpReceiver:
    """aiosmtpd on a free loopback port, keeping every message it is handed."""

    def __init__(self, *, login: tuple[str, str] | None = None) -> None:
        """``login``: (user, password) the server requires (AUTH over the plain connection, as a local relay)."""
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[Any] = []  # aiosmtpd envelopes
        receiver = self
        options: dict[str, Any] = {}
        if login is not None:
            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == login
                return AuthResult(success=ok)

            options = {"authenticator": authenticate, "auth_required": True, "auth_require_tls": False}

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                receiver.messages.append(envelope)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def texts(self) -> Iterator[str]:
        for envelope in self.messages:
            yield envelope.content.decode("utf-8", "replace")
