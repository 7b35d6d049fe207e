"""Fake of SendGrid's v3 Mail Send, and the signed event webhook it posts back."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from .callbacks import Outcome, Prepared, Step, StepFn, attempt_entry, sendgrid_events_post
from .config import Injection, lookup_address
from .state import Record, customer_key, now_iso, touchline_id_from
from .wire import Reply, Request

if TYPE_CHECKING:
    from .server import Simulator

EVENTS_PATH = "/webhooks/sendgrid/events/"
BOUNCE_REASON = "{code} 5.1.1 The email account that you tried to reach does not exist."
SMTP_HOST = "ismtpd0001p1sim.sendgrid.net"
USER_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML)"


def error_reply(status: int, message: str, field: str | None = None, **headers: str) -> Reply:
    """SendGrid's error body: a list of {message, field, help}."""
    body = {"errors": [{"message": message, "field": field, "help": None}]}
    return Reply.json(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


def new_message_id() -> str:
    """An `X-Message-Id`: 22 URL-safe characters."""
    return secrets.token_urlsafe(16)[:22]


def _injected_error(sim: Simulator, inj: Injection) -> Reply | None:
    if inj.error_rate <= 0 or sim.rng.random() >= inj.error_rate:
        return None
    if inj.error_status == 429:
        return error_reply(
            429,
            "too many requests",
            X_RateLimit_Limit="600",
            X_RateLimit_Remaining="0",
            X_RateLimit_Reset=str(int(time.time()) + inj.retry_after),
        )
    message = "service unavailable" if inj.error_status == 503 else "internal server error"
    return error_reply(inj.error_status, message)


def _validate(data: Any) -> Reply | None:
    """The first problem SendGrid would report, as its 400 answer."""
    if not isinstance(data, dict):
        return error_reply(400, "Bad Request")
    personalizations = data.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return error_reply(
            400,
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    for index, personalization in enumerate(personalizations):
        to = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(to, list) or not to:
            return error_reply(
                400,
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
                f"personalizations.{index}.to",
            )
        for position, address in enumerate(to):
            email = address.get("email", "") if isinstance(address, dict) else ""
            if "@" not in str(email):
                return error_reply(
                    400,
                    "Does not contain a valid address.",
                    f"personalizations.{index}.to.{position}.email",
                )
    sender = data.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        return error_reply(
            400,
            "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.",
            "from",
        )
    if data.get("template_id"):
        return None  # a dynamic template brings its own subject and content
    if not data.get("subject") and not all(p.get("subject") for p in personalizations):
        return error_reply(
            400,
            "The subject is required. You can get around this requirement if you use a "
            "template with a subject defined or if every personalization has a subject "
            "defined.",
            "subject",
        )
    content = data.get("content")
    if (
        not isinstance(content, list)
        or not content
        or not all(isinstance(c, dict) and c.get("value") for c in content)
    ):
        return error_reply(
            400,
            "Unless a valid template_id is provided, the content parameter is required. "
            "There must be at least one defined content block.",
            "content",
        )
    return None


def _reject(sim: Simulator, reply: Reply, data: Any, reason: str) -> Reply:
    recipients: list[str] = []
    if isinstance(data, dict):
        for personalization in data.get("personalizations") or []:
            if isinstance(personalization, dict):
                for address in personalization.get("to") or []:
                    if isinstance(address, dict):
                        recipients.append(str(address.get("email")))
    sim.state.add_rejected(
        {
            "provider": "sendgrid",
            "channel": "email",
            "to": ", ".join(recipients) or None,
            "subject": data.get("subject") if isinstance(data, dict) else None,
            "http_status": reply.status,
            "code": None,
            "reason": reason,
        }
    )
    return reply


def mail_send(sim: Simulator, req: Request) -> Reply:
    """POST /v3/mail/send"""
    inj = sim.state.injection
    if inj.latency_ms:
        time.sleep(inj.latency_ms / 1000)
    try:
        data: Any = req.json()
    except ValueError:
        data = None
    scheme, _, token = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        token.strip(), sim.config.sendgrid_api_key
    ):
        denied = error_reply(
            401, "The provided authorization grant is invalid, expired, or revoked"
        )
        return _reject(sim, denied, data, "auth")
    if injected := _injected_error(sim, inj):
        return _reject(sim, injected, data, "injected")
    if invalid := _validate(data):
        return _reject(sim, invalid, data, "validation")
    if ((data.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable"):
        return Reply(200)  # sandbox mode validates and sends nothing, as on SendGrid

    message_id = new_message_id()
    records = [sim.state.add_message(record) for record in _records(data, message_id, sim.config)]
    reply = Reply(202, b"", {"X-Message-Id": message_id})
    reply.after = lambda: sim.dispatcher.run_lifecycle(_lifecycle(sim, records, inj))
    return reply


def _records(data: dict[str, Any], message_id: str, config: Any) -> list[Record]:
    contents = {c.get("type"): c.get("value") for c in data.get("content") or []}
    reply_to = (data.get("reply_to") or {}).get("email")
    if not reply_to and data.get("reply_to_list"):
        reply_to = data["reply_to_list"][0].get("email")
    categories = list(data.get("categories") or [])
    records = []
    for index, personalization in enumerate(data["personalizations"]):
        custom_args = {
            **(data.get("custom_args") or {}),
            **(personalization.get("custom_args") or {}),
        }
        headers = {**(data.get("headers") or {}), **(personalization.get("headers") or {})}
        # SendGrid keeps a Message-ID the sender set; otherwise it makes one from the
        # X-Message-Id (the `smtp-id` of its events).
        header_id = next(
            (str(v) for k, v in headers.items() if k.lower() == "message-id"),
            f"<{message_id}@{SMTP_HOST}>",
        )
        for address in personalization["to"]:
            email = address["email"]
            sg_message_id = (
                f"{message_id}.filterdrecv-{secrets.token_hex(5)}-{index}-"
                f"{int(time.time()):X}-{len(records)}.0"
            )
            records.append(
                {
                    "key": sg_message_id,
                    "id": message_id,
                    "sg_message_id": sg_message_id,
                    "provider": "sendgrid",
                    "channel": "email",
                    "direction": "outbound",
                    "customer": customer_key(email),
                    "to": email,
                    "to_name": address.get("name"),
                    "from": data["from"]["email"],
                    "from_name": data["from"].get("name"),
                    "cc": [a.get("email") for a in personalization.get("cc") or []],
                    "bcc": [a.get("email") for a in personalization.get("bcc") or []],
                    "body": contents.get("text/plain"),
                    "subject": personalization.get("subject") or data.get("subject"),
                    "html": contents.get("text/html"),
                    "content_sid": None,
                    "content_variables": {},
                    "template_id": data.get("template_id"),
                    "dynamic_template_data": personalization.get("dynamic_template_data"),
                    "media_urls": [],
                    "status_callback": None,
                    "reply_to": reply_to,
                    "custom_args": {str(k): str(v) for k, v in custom_args.items()},
                    "headers": headers,
                    "message_id_header": header_id,
                    "categories": categories,
                    "asm_group_id": (data.get("asm") or {}).get("group_id"),
                    "received_at": now_iso(),
                    "touchline_id": touchline_id_from(custom_args),
                    "status": "queued",
                    "error_code": None,
                }
            )
    return records


def event_payload(record: Record, name: str) -> dict[str, Any]:
    """One event as SendGrid posts it; custom args are top-level keys (ours win on a clash)."""
    event: dict[str, Any] = dict(record["custom_args"])
    event.update(
        {
            "email": record["to"],
            "timestamp": int(time.time()),
            "event": name,
            "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": record["sg_message_id"],
            "smtp-id": record["message_id_header"],
        }
    )
    if record["categories"]:
        event["category"] = list(record["categories"])
    if record.get("asm_group_id") is not None:
        event["asm_group_id"] = record["asm_group_id"]
    if name == "delivered":
        event.update({"response": "250 2.0.0 OK", "ip": "127.0.0.1", "tls": 1})
    elif name == "bounce":
        code = record.get("error_code") or 550
        smtp = code if 400 <= code < 600 else 550
        event.update(
            {
                "reason": BOUNCE_REASON.format(code=smtp),
                "status": "5.1.1",
                "type": "bounce",
                "bounce_classification": "Invalid Address",
            }
        )
    elif name in ("open", "click"):
        event.update({"useragent": USER_AGENT, "ip": "203.0.113.7"})
        if name == "open":
            event["sg_machine_open"] = False
        else:
            event["url"] = _first_link(record)
            event["url_offset"] = {"index": 0, "type": "html" if record["html"] else "text"}
    return event


def _first_link(record: Record) -> str:
    for text in (record.get("html") or "", record.get("body") or ""):
        start = text.find("http")
        if start >= 0:
            end = start
            while end < len(text) and text[end] not in " \t\r\n\"'<>)":
                end += 1
            return text[start:end]
    return "https://touchline.example/"


def events_step(sim: Simulator, outcome_for: dict[str, tuple[str, int | None]]) -> StepFn:
    """A step moving each message (by key) to its (event, error code) and posting one signed
    batch for all of them, as SendGrid batches events."""
    generation = sim.state.generation

    def run() -> Prepared | None:
        current: list[Record] = []
        for key, (name, code) in outcome_for.items():
            updated = sim.state.set_status(key, name, error_code=code, generation=generation)
            if updated is not None:
                current.append(updated)
        if not current:
            return None
        skipped = _skip_reason(sim)
        if skipped:
            for record in current:
                name = outcome_for[record["key"]][0]
                sim.state.add_event(record["key"], {"name": name, "skipped": skipped}, settled=name)
            return None
        events = [event_payload(record, outcome_for[record["key"]][0]) for record in current]
        post = sendgrid_events_post(
            sim.config.sendgrid_signing_key_pem, sim.config.public_base_url + EVENTS_PATH, events
        )

        def log(attempt: int, outcome: Outcome, final: bool) -> None:
            for record in current:
                name = outcome_for[record["key"]][0]
                entry = attempt_entry(name, attempt, outcome)
                sim.state.add_event(record["key"], entry, settled=name if final else None)

        return post, log

    return run


def _skip_reason(sim: Simulator) -> str | None:
    if not sim.state.injection.callbacks:
        return "callbacks off"
    if not sim.config.sendgrid_signing_key_pem:
        return "no signing key"
    return None


def _lifecycle(sim: Simulator, records: list[Record], inj: Injection) -> list[Step]:
    processed: dict[str, tuple[str, int | None]] = {}
    final: dict[str, tuple[str, int | None]] = {}
    for record in records:
        processed[record["key"]] = ("processed", None)
        code = lookup_address(inj.undeliverable, record["to"])
        final[record["key"]] = ("delivered", None) if code is None else ("bounce", code)
    return [
        (0.0, events_step(sim, processed)),
        (inj.callback_delay_ms / 1000, events_step(sim, final)),
    ]
