"""Fake of Twilio's Messages resource (create and fetch), answering like api.twilio.com."""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .callbacks import Prepared, Step, StepFn, attempt_entry, twilio_form_post
from .config import Injection, lookup_address
from .state import Record, customer_key, now_iso, touchline_id_from
from .wire import Reply, Request

if TYPE_CHECKING:
    from .server import Simulator

API_VERSION = "2010-04-01"
MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
MESSAGE_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$"
)
# Twilio's own check is looser than full numbering-plan validation; this catches non-E.164.
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAX_BODY = 1600
WHATSAPP_WINDOW = timedelta(hours=24)

ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21656: "The ContentVariables Parameter is invalid.",
    63016: "Failed to send freeform message because you are outside the allowed window. "
    "If you want to send messages outside this window, please use a Template.",
}

# GSM 03.38: the basic set costs one septet, the extension set two; anything else means UCS-2.
GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = set("^{}\\[~]|€\f")


def new_sid(prefix: str = "SM") -> str:
    """A Twilio-style SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def num_segments(body: str) -> int:
    """How many SMS segments Twilio would bill for `body`."""
    if not body:
        return 1
    if all(ch in GSM_BASIC or ch in GSM_EXTENDED for ch in body):
        septets = sum(2 if ch in GSM_EXTENDED else 1 for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def error_reply(status: int, code: int, headers: dict[str, str] | None = None, **fmt: str) -> Reply:
    """A Twilio legacy-format error (what TwilioRestException parses)."""
    message = ERROR_MESSAGES.get(code, f"Simulated Twilio error {code}").format(**fmt)
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply.json(status, body, headers)


def _authenticate(sim: Simulator, req: Request, account: str) -> Reply | None:
    credentials = req.basic_auth()
    config = sim.config
    if (
        credentials is None
        or not secrets.compare_digest(credentials[0], config.account_sid)
        or not secrets.compare_digest(credentials[1], config.auth_token)
        or account != config.account_sid
    ):
        reply = error_reply(401, 20003)
        reply.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return reply
    return None


def injected_error(sim: Simulator, inj: Injection) -> Reply | None:
    """The random 429/5xx of `error_rate`, or None."""
    if inj.error_rate <= 0 or sim.rng.random() >= inj.error_rate:
        return None
    if inj.error_status == 429:
        return error_reply(429, 20429, {"Retry-After": str(inj.retry_after)})
    code = 20503 if inj.error_status == 503 else 20500
    return error_reply(inj.error_status, code)


def message_json(sim: Simulator, record: Record) -> dict[str, Any]:
    """The Message resource as Twilio renders it."""
    account = sim.config.account_sid
    sid = record["id"]
    created = format_datetime(datetime.fromisoformat(record["received_at"]))
    uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}"
    return {
        "account_sid": account,
        "api_version": API_VERSION,
        "body": record["body"] or "",
        "date_created": created,
        "date_sent": created if record["status"] not in ("queued", "accepted") else None,
        "date_updated": format_datetime(datetime.now(UTC)),
        "direction": "outbound-api" if record["direction"] == "outbound" else "inbound",
        "error_code": record.get("error_code"),
        "error_message": ERROR_MESSAGES.get(record["error_code"])
        if record.get("error_code")
        else None,
        "from": record["from"],
        "messaging_service_sid": record.get("messaging_service_sid"),
        "num_media": str(len(record["media_urls"])),
        "num_segments": str(record.get("num_segments", 1)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": record["status"],
        "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
        "to": record["to"],
        "uri": f"{uri}.json",
    }


def _reject(sim: Simulator, reply: Reply, fields: dict[str, str], reason: str) -> Reply:
    payload = json.loads(reply.body)
    sim.state.add_rejected(
        {
            "provider": "twilio",
            "channel": "whatsapp" if fields.get("To", "").startswith("whatsapp:") else "sms",
            "to": fields.get("To"),
            "from": fields.get("From"),
            "body": fields.get("Body"),
            "status_callback": fields.get("StatusCallback"),
            "touchline_id": touchline_id_from(_callback_query(fields.get("StatusCallback"))),
            "http_status": reply.status,
            "code": payload.get("code"),
            "reason": reason,
        }
    )
    return reply


def _callback_query(url: str | None) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query) if url else {}


def create_message(sim: Simulator, req: Request, account: str) -> Reply:
    """POST /2010-04-01/Accounts/{AccountSid}/Messages.json"""
    inj = sim.state.injection
    if inj.latency_ms:
        time.sleep(inj.latency_ms / 1000)
    form = req.form()
    fields = {name: values[0] for name, values in form.items() if values}
    if denied := _authenticate(sim, req, account):
        return _reject(sim, denied, fields, "auth")
    if injected := injected_error(sim, inj):
        return _reject(sim, injected, fields, "injected")

    to = fields.get("To", "").strip()
    body = fields.get("Body", "")
    media_urls = [url for url in form.get("MediaUrl", []) if url]
    content_sid = fields.get("ContentSid") or None
    number = to.removeprefix("whatsapp:")
    invalid: Reply | None = None
    if not to:
        invalid = error_reply(400, 21604)
    elif not fields.get("From") and not fields.get("MessagingServiceSid"):
        invalid = error_reply(400, 21603)
    elif not body and not content_sid and not media_urls:
        invalid = error_reply(400, 21602)
    elif len(body) > MAX_BODY:
        invalid = error_reply(400, 21617)
    elif not E164.match(number):
        invalid = error_reply(400, 21211, to=to)
    variables: dict[str, Any] = {}
    if invalid is None and fields.get("ContentVariables"):
        try:
            variables = json.loads(fields["ContentVariables"])
            if not isinstance(variables, dict):
                raise ValueError
        except ValueError:
            invalid = error_reply(400, 21656)
    if invalid is not None:
        return _reject(sim, invalid, fields, "validation")
    code = lookup_address(inj.fail_numbers, to)
    if code is not None:
        return _reject(sim, error_reply(400, code, to=to), fields, "fail_number")

    channel = "whatsapp" if to.startswith("whatsapp:") else "sms"
    sid = new_sid()
    callback = fields.get("StatusCallback") or None
    record = sim.state.add_message(
        {
            "key": sid,
            "id": sid,
            "provider": "twilio",
            "channel": channel,
            "direction": "outbound",
            "customer": customer_key(to),
            "to": to,
            "from": fields.get("From") or None,
            "messaging_service_sid": fields.get("MessagingServiceSid") or None,
            "body": body,
            "subject": None,
            "html": None,
            "content_sid": content_sid,
            "content_variables": variables,
            "media_urls": media_urls,
            "status_callback": callback,
            "reply_to": None,
            "custom_args": {},
            "headers": {},
            "categories": [],
            "num_segments": num_segments(body),
            "received_at": now_iso(),
            "touchline_id": touchline_id_from(_callback_query(callback)),
            # A Messaging Service answers `accepted` until it has picked a sender.
            "status": "accepted" if fields.get("MessagingServiceSid") else "queued",
            "error_code": None,
        }
    )
    reply = Reply.json(201, message_json(sim, record))
    reply.after = lambda: sim.dispatcher.run_lifecycle(_lifecycle(sim, record, inj))
    return reply


def fetch_message(sim: Simulator, req: Request, account: str, sid: str) -> Reply:
    """GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json (for reconciliation)."""
    if denied := _authenticate(sim, req, account):
        return denied
    record = sim.state.get(sid)
    if record is None or record["provider"] != "twilio":
        return error_reply(404, 20404, path=req.path)
    return Reply.json(200, message_json(sim, record))


def _outside_window(sim: Simulator, record: Record) -> bool:
    last = sim.state.latest(customer=record["to"], channel="whatsapp", direction="inbound")
    if last is None:
        return True
    return datetime.now(UTC) - datetime.fromisoformat(last["received_at"]) > WHATSAPP_WINDOW


def _lifecycle(sim: Simulator, record: Record, inj: Injection) -> list[Step]:
    delay = inj.callback_delay_ms / 1000
    whatsapp = record["channel"] == "whatsapp"
    address = record["to"]
    failure = lookup_address(inj.undeliverable, address)
    free_form = whatsapp and not record["content_sid"]
    if free_form and inj.enforce_whatsapp_window and _outside_window(sim, record):
        failure = 63016
    if failure == 63016:
        # Twilio rejects an out-of-window free-form message before sending it at all.
        return [(0.0, status_step(sim, record, "failed", 63016))]
    steps: list[Step] = [(0.0, status_step(sim, record, "sent"))]
    if failure is not None:
        steps.append((delay, status_step(sim, record, "undelivered", failure)))
        return steps
    steps.append((delay, status_step(sim, record, "delivered")))
    if whatsapp and inj.whatsapp_read:
        steps.append((delay, status_step(sim, record, "read")))
    return steps


def status_params(sim: Simulator, record: Record, status: str, code: int | None) -> dict[str, str]:
    """The form fields of a status callback."""
    config = sim.config
    whatsapp = record["channel"] == "whatsapp"
    sender = record["from"] or (
        f"whatsapp:{config.whatsapp_number}" if whatsapp else config.sms_number
    )
    params = {
        "MessageSid": record["id"],
        "SmsSid": record["id"],
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": config.account_sid,
        "From": sender,
        "To": record["to"],
        "ApiVersion": API_VERSION,
    }
    if record.get("messaging_service_sid"):
        params["MessagingServiceSid"] = record["messaging_service_sid"]
    if whatsapp:
        params["ChannelPrefix"] = "whatsapp"
    if code is not None:
        params["ErrorCode"] = str(code)
    return params


def status_step(sim: Simulator, record: Record, status: str, code: int | None = None) -> StepFn:
    """A lifecycle step moving the message to `status` and posting its signed callback."""
    key = record["key"]
    generation = sim.state.generation

    def run() -> Prepared | None:
        current = sim.state.set_status(key, status, error_code=code, generation=generation)
        if current is None:
            return None
        url = current["status_callback"]
        if not url:
            sim.state.add_event(key, None, settled=status)
            return None
        if not sim.state.injection.callbacks:
            sim.state.add_event(key, {"name": status, "skipped": "callbacks off"}, settled=status)
            return None
        post = twilio_form_post(
            sim.config.auth_token, url, status_params(sim, current, status, code)
        )
        return post, lambda attempt, outcome, final: sim.state.add_event(
            key, attempt_entry(status, attempt, outcome), settled=status if final else None
        )

    return run
