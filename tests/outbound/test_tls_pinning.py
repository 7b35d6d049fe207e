"""https:// deliveries connect to the checked address but still speak TLS to the name: SNI and
certificate verification use the URL's host, so pinning the address never weakens TLS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from outbound import services

from .tls import NAME, tls_server_context

pytestmark = pytest.mark.django_db


@dataclass
class TlsReceiver:
    port: int
    ca_file: Path
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@pytest.fixture
def tls_receiver(tmp_path) -> Iterator[TlsReceiver]:
    context, ca_file = tls_server_context(tmp_path)
    seen = TlsReceiver(port=0, ca_file=ca_file)
    context.sni_callback = lambda _sock, name, _ctx: seen.server_names.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self):
            sock, address = super().get_request()
            return context.wrap_socket(sock, server_side=True), address

        def handle_error(self, request, client_address) -> None:
            pass  # failed handshakes are what some tests are about

    server = Server(("127.0.0.1", 0), Handler)
    seen.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def pinned(tls_receiver, settings, dns):
    settings.OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = [f"127.0.0.1:{tls_receiver.port}"]
    settings.OUTBOUND_WEBHOOK_CA_BUNDLE = str(tls_receiver.ca_file)
    settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS = 5
    dns[NAME] = ["127.0.0.1"]
    dns["other.example.com"] = ["127.0.0.1"]
    return tls_receiver


def test_https_goes_to_the_checked_address_with_sni_host_and_verification_for_the_name(
    pinned, ping
):
    subscription = services.subscription_create(
        url=f"https://{NAME}:{pinned.port}/in", event_types=["message.sent"]
    )

    delivery = ping(subscription)

    assert delivery.status == "succeeded", list(delivery.attempt_log.values("error"))
    assert pinned.server_names == [NAME]
    assert pinned.hosts == [f"{NAME}:{pinned.port}"]
    [attempt] = delivery.attempt_log.all()
    assert (attempt.status_code, attempt.response_body) == (200, "ok")


@pytest.mark.parametrize("host", ["other.example.com", "127.0.0.1"])
def test_a_certificate_for_another_name_fails_verification(pinned, ping, host):
    subscription = services.subscription_create(
        url=f"https://{host}:{pinned.port}/in", event_types=["message.sent"]
    )

    delivery = ping(subscription)

    assert (delivery.status, delivery.attempts) == ("pending", 1)  # retried, like any TLS error
    [attempt] = delivery.attempt_log.all()
    assert "CERTIFICATE_VERIFY_FAILED" in attempt.error
    assert (attempt.status_code, attempt.response_body) == (None, "")
    assert pinned.hosts == []
