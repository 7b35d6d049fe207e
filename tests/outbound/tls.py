"""A throwaway CA and a server certificate for NAME, for the local https:// receivers of the
outbound tests (TLS pinning, the overall deadline)."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NAME = "hooks.example.com"


def certificate(*, subject: str, issuer_key, issuer_name, key, ca: bool, san: list[str]):
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


def tls_server_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for NAME, and the CA file that verifies it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Touchline test CA")])
    ca_cert = certificate(
        subject="Touchline test CA",
        issuer_key=ca_key,
        issuer_name=ca_name,
        key=ca_key,
        ca=True,
        san=[],
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(
        subject=NAME, issuer_key=ca_key, issuer_name=ca_name, key=key, ca=False, san=[NAME]
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = directory / "chain.pem"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return context, ca_file
