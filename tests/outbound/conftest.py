"""Outbound webhook fixtures: a local HTTP receiver, a subscription maker, and a Standard
Webhooks verifier written from the spec (independent of outbound.signing)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from outbound import services


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records requests and answers as told: a status
    code, `(status, headers)`, or "timeout" (sleeps past the sender's timeout)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: deque[Any] = deque()
        self.default: Any = 200
        self.sleep_seconds = 2.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    answer = receiver.answers.popleft() if receiver.answers else receiver.default
                if answer == "timeout":
                    time.sleep(receiver.sleep_seconds)
                    answer = 200
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                payload = f"answer {status}".encode()
                # After a timeout the sender has hung up: writing may fail, and that is fine.
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def respond(self, *answers: Any) -> None:
        self.answers.extend(answers)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.answers.clear()
            self.default = 200


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def receiver(_receiver_server: Receiver, settings) -> Iterator[Receiver]:
    _receiver_server.reset()
    # Short timeouts keep the timeout test quick; the receiver sleeps past it.
    settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS = 0.5
    _receiver_server.sleep_seconds = 1.5
    yield _receiver_server
    _receiver_server.reset()


@pytest.fixture
def subscribe(db, receiver: Receiver):
    def _subscribe(*event_types: str, url: str | None = None, **fields: Any):
        return services.subscription_create(
            url=url or receiver.url, event_types=list(event_types), **fields
        )

    return _subscribe


def spec_verify(
    *, secret: str, headers: dict[str, str], body: bytes, tolerance_seconds: int = 300
) -> bool:
    """Standard Webhooks v1 verification, from the spec: HMAC-SHA256 over
    `{webhook-id}.{webhook-timestamp}.{body}` keyed with base64-decoded secret (sans `whsec_`),
    base64 in `webhook-signature` as a space-separated list of `v1,<sig>`."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_seconds:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return True
    return False
