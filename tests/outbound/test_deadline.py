"""A receiver that trickles its answer cannot hold a worker: every webhook request has one
overall deadline (OUTBOUND_WEBHOOK_TIMEOUT_SECONDS), not only a timeout per socket read."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from outbound import egress
from tests.outbound.tls import NAME, tls_server_context

pytestmark = pytest.mark.django_db

# One byte every INTERVAL seconds for BYTES bytes: 20 s of trickle, far past the 1 s deadline.
INTERVAL = 0.2
BYTES = 100


class Trickler:
    """A receiver on 127.0.0.1 that reads the request, then sends its answer's first part and
    trickles the rest one byte at a time: status line and headers (`mode="headers"`) or the
    body after complete headers (`mode="body"`), or headers over TLS after a normal
    handshake (`"tls-headers"`; CPython already bounds a TLS handshake as a whole)."""

    def __init__(self, mode: str, context: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.context = context
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.sent_all = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        port = self.listener.getsockname()[1]
        if self.context is not None:
            return f"https://{NAME}:{port}/hooks"
        return f"http://127.0.0.1:{port}/hooks"

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.listener.accept()
            with conn:
                self.connected.set()
                if self.mode == "tls-headers":
                    conn = self.context.wrap_socket(conn, server_side=True)
                conn.recv(65536)
                if self.mode == "body":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
                self._trickle(conn, b"a" * BYTES)

    def _trickle(self, conn: socket.socket, data: bytes) -> None:
        for index in range(len(data)):
            if self.stop.wait(INTERVAL):
                return
            conn.sendall(data[index : index + 1])
        self.sent_all.set()


@pytest.fixture
def trickler(request, settings, receiver, dns, tmp_path) -> Iterator[Trickler]:
    # (after `receiver`, which sets these for its own port)
    context = None
    if request.param.startswith("tls"):
        context, ca_file = tls_server_context(tmp_path)
        settings.OUTBOUND_WEBHOOK_CA_BUNDLE = str(ca_file)
        dns[NAME] = ["127.0.0.1"]
    server = Trickler(request.param, context)
    server.thread.start()
    settings.OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1"]
    settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS = 1.0
    yield server
    server.stop.set()
    server.listener.close()
    server.thread.join(5)


@pytest.mark.parametrize("trickler", ["headers", "body", "tls-headers"], indirect=True)
def test_a_trickling_receiver_is_cut_off_at_the_deadline(trickler):
    with pytest.raises(egress.DeadlineExceeded):
        egress.post(url=trickler.url, body=b"{}", headers={}, timeout=1.0)

    # The call came back while the receiver was still trickling (it would for 20 s).
    assert trickler.connected.is_set()
    assert not trickler.sent_all.is_set()


@pytest.mark.parametrize("trickler", ["headers", "body"], indirect=True)
def test_the_deadline_is_a_retryable_timeout_logged_without_a_body(trickler, subscribe, ping):
    subscription = subscribe("message.sent", url=trickler.url)

    delivery = ping(subscription)

    assert not trickler.sent_all.is_set()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.next_attempt_at is not None
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None
    assert attempt.error == "timed out after 1 s"
    assert attempt.response_body == ""


def test_a_webhook_timeout_no_request_could_fit_is_a_system_check_error(settings):
    from outbound.checks import webhook_timeout_fits_the_delivery_soft_limit

    assert webhook_timeout_fits_the_delivery_soft_limit() == []
    settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS = 40
    [error] = webhook_timeout_fits_the_delivery_soft_limit()
    assert error.id == "outbound.E001"
