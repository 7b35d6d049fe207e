"""Fake of Twilio's Messages resource (create, fetch and list), answering like api.twilio.com."""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

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


# Twilio pages lists 50 at a time by default and 1,000 at most.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LIST_FILTERS = ("To", "From", "DateSent", "DateSent<", "DateSent>")


def _date_sent(record: Record) -> datetime | None:
    """When Twilio sent it: none while it is still queued or accepted."""
    if record["status"] in ("queued", "accepted", "scheduled"):
        return None
    return datetime.fromisoformat(record["received_at"])


def _parse_date_filter(value: str) -> tuple[datetime, bool]:
    """A DateSent value: (instant, date_only). Twilio takes YYYY-MM-DD or an ISO 8601 time
    (the SDK sends `%Y-%m-%dT%H:%M:%SZ`); ValueError otherwise."""
    value = value.strip()
    if _DATE_ONLY.match(value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC), True
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)), False


def _date_matches(sent: datetime, op: str, bound: datetime, date_only: bool) -> bool:
    # DateSent alone names a day (the SDK sends a date as midnight); the bounds may be times.
    if date_only or not op:
        day, limit = sent.date(), bound.date()
        return {"": day == limit, "<": day <= limit, ">": day >= limit}[op]
    sent = sent.replace(microsecond=0)  # the filter is to the second
    return {"": sent == bound, "<": sent <= bound, ">": sent >= bound}[op]


def list_messages(sim: Simulator, req: Request, account: str) -> Reply:
    """GET /2010-04-01/Accounts/{AccountSid}/Messages.json: newest first, filtered by To, From
    and DateSent (`DateSent<` on or before, `DateSent>` on or after), paged with PageSize and
    PageToken (`next_page_uri` is null on the last page)."""
    if denied := _authenticate(sim, req, account):
        return denied
    query = {name: values[0] for name, values in req.query.items() if values}
    try:
        page_size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
        page = int(query.get("Page", 0))
        dates = [
            (name.removeprefix("DateSent"), *_parse_date_filter(query[name]))
            for name in ("DateSent", "DateSent<", "DateSent>")
            if name in query
        ]
    except ValueError:
        return Reply.json(
            400,
            {
                "code": 20001,
                "message": "Invalid filter or paging parameter",
                "more_info": "https://www.twilio.com/docs/errors/20001",
                "status": 400,
            },
        )
    page_size = max(1, min(page_size, MAX_PAGE_SIZE))
    rows = []
    for record in reversed(sim.state.messages(provider="twilio")):
        if "To" in query and record["to"] != query["To"]:
            continue
        if "From" in query and record["from"] != query["From"]:
            continue
        if dates:
            sent = _date_sent(record)
            if sent is None or not all(_date_matches(sent, *d) for d in dates):
                continue
        rows.append(record)
    token = query.get("PageToken", "")
    start_index = 0
    if token:
        # The token names the last message of the previous page: this page starts after it.
        last_sid = "SM" + token.removeprefix("PA").removeprefix("SM")
        ids = [r["id"] for r in rows]
        start_index = ids.index(last_sid) + 1 if last_sid in ids else len(rows)
    chunk = rows[start_index : start_index + page_size]
    kept = {name: query[name] for name in _LIST_FILTERS if name in query}
    base = f"/{API_VERSION}/Accounts/{account}/Messages.json"

    def uri(number: int, page_token: str | None = None) -> str:
        params = {**kept, "PageSize": str(page_size), "Page": str(number)}
        if page_token:
            params["PageToken"] = page_token
        return f"{base}?{urlencode(params)}"

    more = start_index + page_size < len(rows)
    start = page * page_size
    return Reply.json(
        200,
        {
            "end": start + len(chunk) - 1 if chunk else start,
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1, "PA" + chunk[-1]["id"]) if more and chunk else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "messages": [message_json(sim, r) for r in chunk],
            "start": start,
            "uri": uri(page, token or None),
        },
    )


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
