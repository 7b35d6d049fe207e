"""Reading SendGrid Inbound Parse posts: multipart fields in their declared charsets, the
reply text without quoted history, the ids the reply refers to.

The multipart body is parsed with the standard library's MIME parser rather than Django's
MultiPartParser: Django's parser caps non-file fields at the site-wide DATA_UPLOAD_MAX_MEMORY_SIZE
(read straight from settings, with no per-view override), and it decodes every field as
UTF-8, while SendGrid posts each field's raw bytes in the charset its `charsets` field names.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from email import policy
from email.errors import CloseBoundaryNotFoundDefect
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import collapse_rfc2231_value, getaddresses, parseaddr
from html.parser import HTMLParser
from typing import Any

from email_reply_parser import EmailReplyParser

from ..events import Attachment
from .base import clean_json, clean_text

MAX_PARTS = 1000  # as Django's DATA_UPLOAD_MAX_NUMBER_FIELDS default

_MESSAGE_ID_RE = re.compile(r"<([^<>\s]+)>")


class MalformedForm(ValueError):
    """The body is not a usable multipart/form-data document."""


@dataclass
class FormData:
    """The raw parts of a multipart/form-data body: field bytes and file descriptions."""

    fields: dict[str, bytes] = field(default_factory=dict)
    # name → (filename, content type, size, SHA-256 of the content): the bytes are not kept
    files: dict[str, tuple[str, str, int, str]] = field(default_factory=dict)


def parse_form(content_type: str, body: bytes) -> FormData:
    """Split a multipart/form-data body into fields (bytes) and files (described, not kept)."""
    try:
        head = b"Content-Type: " + content_type.encode("ascii") + b"\r\n\r\n"
    except UnicodeEncodeError as exc:
        raise MalformedForm("The Content-Type header is not ASCII.") from exc
    document = BytesParser(policy=policy.compat32).parsebytes(head + body)
    if not document.is_multipart():
        raise MalformedForm("The body is not multipart/form-data with a valid boundary.")
    if any(isinstance(d, CloseBoundaryNotFoundDefect) for d in document.defects):
        raise MalformedForm("The multipart body is truncated (no closing boundary).")
    parts = document.get_payload()
    if len(parts) > MAX_PARTS:
        raise MalformedForm(f"More than {MAX_PARTS} parts.")
    form = FormData()
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        name = collapse_rfc2231_value(name)
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue  # a nested multipart: not something Inbound Parse sends
        filename = part.get_filename()
        if filename is not None:
            content_type_header = part.get("Content-Type")
            form.files.setdefault(
                name,
                (
                    filename,
                    part.get_content_type() if content_type_header else "",
                    len(payload),
                    hashlib.sha256(payload).hexdigest(),
                ),
            )
        else:
            form.fields.setdefault(name, payload)
    return form


def decode_field(raw: bytes, charset: str | None) -> str:
    """`raw` decoded in `charset`; unknown charsets and bad bytes fall back to UTF-8 replace."""
    try:
        # bytes.decode refuses codecs that are not character sets (base64, rot13) with
        # LookupError; a few (idna) reject the "replace" handler with UnicodeError.
        text = raw.decode((charset or "utf-8").strip(), errors="replace")
    except (LookupError, ValueError, TypeError):
        text = raw.decode("utf-8", errors="replace")
    return clean_text(text)


def decode_fields(form: FormData) -> dict[str, str]:
    """Every field as text, honouring the `charsets` map SendGrid sends (JSON)."""
    charsets: dict[str, Any] = {}
    try:
        loaded = json.loads(form.fields.get("charsets", b"{}").decode("utf-8"))
    except (ValueError, RecursionError):
        loaded = None
    if isinstance(loaded, dict):
        charsets = loaded
    decoded = {}
    for name, raw in form.fields.items():
        charset = charsets.get(name)
        decoded[name] = decode_field(raw, charset if isinstance(charset, str) else None)
    return decoded


def json_field(value: str) -> Any:
    """A JSON-valued form field, or None when absent or malformed."""
    if not value:
        return None
    try:
        return clean_json(json.loads(value))
    except (ValueError, RecursionError):
        return None


def envelope_addresses(value: str) -> tuple[str, list[str]]:
    """(from, [to...]) from the `envelope` field; empty when absent or malformed."""
    envelope = json_field(value)
    if not isinstance(envelope, dict):
        return "", []
    sender = envelope.get("from")
    to = envelope.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list):
        to = []
    return (sender if isinstance(sender, str) else ""), [a for a in to if isinstance(a, str)]


def header_addresses(*values: str) -> list[str]:
    """The bare addresses in address headers (To, Cc), in order."""
    return [address for _, address in getaddresses([v for v in values if v]) if address]


def bare_address(value: str) -> str:
    """The lowercased address part of `Name <addr>` (or of a bare address)."""
    address = parseaddr(value or "")[1].strip().lower()
    return address if "@" in address else ""


def message_ids(value: str | None) -> list[str]:
    """Message ids in an In-Reply-To/References value, without angle brackets."""
    if not value:
        return []
    found = _MESSAGE_ID_RE.findall(value)
    return found or value.split()


def parse_headers(text: str) -> Message:
    """The `headers` field (the original mail's header block) as a Message."""
    return HeaderParser(policy=policy.compat32).parsestr(text or "")


def decode_subject(value: str) -> str:
    """A subject, with any RFC 2047 encoded-words left in it decoded."""
    if "=?" not in value:
        return value
    try:
        return clean_text(str(make_header(decode_header(value))))
    except (ValueError, LookupError, UnicodeError):
        return value


def reply_text(text: str) -> str:
    """The new part of a reply: quoted history and signature removed."""
    if not text.strip():
        return ""
    return EmailReplyParser.parse_reply(text.replace("\r\n", "\n"))


def fallback_event_id(*parts: str) -> str:
    """A stable id for a mail without Message-ID."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()
    return f"sha256:{digest}"


def attachments(form: FormData, info: Any) -> tuple[Attachment, ...]:
    """Attachment descriptions; SendGrid's attachment-info JSON has the decoded filename."""
    info = info if isinstance(info, dict) else {}
    found = []
    for name, (filename, content_type, size, digest) in form.files.items():
        meta = info.get(name) if isinstance(info.get(name), dict) else {}
        found.append(
            Attachment(
                filename=clean_text(str(meta.get("filename") or meta.get("name") or filename)),
                content_type=clean_text(
                    str(meta.get("type") or content_type or "application/octet-stream")
                ),
                size=size,
                sha256=digest,
            )
        )
    return tuple(found)


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset(
        {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr"}
    )
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """Readable text from an HTML mail body (for replies sent without a text part)."""
    if not html:
        return ""
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except Exception:  # untrusted markup: fall back to dropping tags
        extractor.chunks = [re.sub(r"<[^>]*>", " ", html)]
    lines = [" ".join(line.split()) for line in "".join(extractor.chunks).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


@dataclass
class RawMime:
    """The useful parts of a full MIME message (Inbound Parse's "send raw" mode)."""

    headers: str = ""
    text: str = ""
    html: str = ""
    attachments: tuple[Attachment, ...] = ()


def read_raw_mime(raw: bytes) -> RawMime:
    """Headers, text and HTML bodies and attachment descriptions of a raw RFC 5322 message."""
    try:
        return _read_raw_mime(raw)
    except Exception as exc:  # the stdlib's header parsers can trip on junk
        raise MalformedForm("The raw email could not be parsed.") from exc


def _read_raw_mime(raw: bytes) -> RawMime:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    headers = "".join(f"{name}: {value}\n" for name, value in message.items())
    result = RawMime(headers=clean_text(headers))
    for kind in ("plain", "html"):
        part = message.get_body(preferencelist=(kind,))
        if part is None:
            continue
        try:
            content = part.get_content()
        except (LookupError, ValueError, AssertionError, UnicodeError):
            payload = part.get_payload(decode=True) or b""
            content = payload.decode("utf-8", errors="replace")
        if kind == "plain":
            result.text = clean_text(str(content))
        else:
            result.html = clean_text(str(content))
    found = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        payload = payload if isinstance(payload, bytes) else b""
        found.append(
            Attachment(
                filename=clean_text(part.get_filename() or ""),
                content_type=part.get_content_type(),
                size=len(payload),
                sha256=hashlib.sha256(payload).hexdigest() if payload else "",
            )
        )
    result.attachments = tuple(found)
    return result
