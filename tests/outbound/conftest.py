"""Outbound webhook fixtures: a local HTTP receiver, a subscription maker, and a Standard
Webhooks verifier written from the spec (independent of outbound.signing)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import time_machine

from outbound import services, tasks
from outbound.models import WebhookDelivery, WebhookSubscription


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
    code, `(status, headers)`, `(status, headers, body bytes)`, or "timeout" (sleeps past the
    sender's timeout)."""

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
                if not isinstance(answer, tuple):
                    answer = (answer,)
                status = answer[0]
                headers = answer[1] if len(answer) > 1 else {}
                payload = answer[2] if len(answer) > 2 else f"answer {status}".encode()
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
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

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


@pytest.fixture(autouse=True)
def dns(monkeypatch) -> dict[str, Callable[[], list[str]] | list[str]]:
    """A resolver the tests control (real DNS would leave the machine): names put in this
    table resolve to their addresses (a callable is asked on every lookup), any other name
    does not resolve; IP literals and `localhost` go to the system's getaddrinfo."""
    table: dict[str, Callable[[], list[str]] | list[str]] = {}
    system = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in table:
            answers = table[name]
            addresses = answers() if callable(answers) else answers
            results = []
            for address in addresses:
                if ipaddress.ip_address(address).version == 6:
                    results.append(
                        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port), 0, 0))
                    )
                else:
                    results.append(
                        (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))
                    )
            return results
        try:
            ipaddress.ip_address(name.split("%")[0])
        except ValueError:
            if name != "localhost":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return system(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.fixture
def receiver(_receiver_server: Receiver, settings) -> Iterator[Receiver]:
    _receiver_server.reset()
    # The receiver is on loopback, which webhooks may reach only through the allow-list.
    settings.OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = [f"127.0.0.1:{_receiver_server.port}"]
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


@pytest.fixture
def ping(django_capture_on_commit_callbacks):
    """Queue a webhook.test delivery and run its on-commit kick (eager Celery) inline."""

    def _ping(subscription: WebhookSubscription) -> WebhookDelivery:
        with django_capture_on_commit_callbacks(execute=True):
            delivery = services.ping_send(subscription=subscription)
        delivery.refresh_from_db()
        return delivery

    return _ping


def dispatch_at(when: dt.datetime) -> int:
    """Run the beat dispatcher at `when` (its deliver tasks run inline)."""
    with time_machine.travel(when, tick=True):
        return tasks.dispatch_due_webhooks()


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
