"""https:// deliveries connect to the checked address but still speak TLS to the name: SNI and
certificate verification use the URL's host, so pinning the address never weakens TLS."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from outbound import services

pytestmark = pytest.mark.django_db

NAME = "hooks.example.com"


def _certificate(*, subject: str, issuer_key, issuer_name, key, ca: bool, san: list[str]):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class TlsReceiver:
    port: int
    ca_file: Path
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@pytest.fixture
def tls_receiver(tmp_path) -> Iterator[TlsReceiver]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Touchline test CA")])
    ca_cert = _certificate(
        subject="Touchline test CA",
        issuer_key=ca_key,
        issuer_name=ca_name,
        key=ca_key,
        ca=True,
        san=[],
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(
        subject=NAME, issuer_key=ca_key, issuer_name=ca_name, key=leaf_key, ca=False, san=[NAME]
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = tmp_path / "leaf.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
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
