"""The simulator's one HTML page: each customer's phone/mailbox, a reply box, and the
failure-injection panel. Self-contained (inline CSS/JS); every value goes through html.escape."""

from __future__ import annotations

import json
import re
from html import escape
from typing import TYPE_CHECKING, Any

from .customer import channel_for
from .state import Record

if TYPE_CHECKING:
    from .server import Simulator

EMAIL_ACTIONS = (("open", "open"), ("click", "click"), ("unsubscribe", "unsubscribe"))
FAILED = ("failed", "undelivered", "bounce", "dropped", "spamreport")
# Links in a message body, as a phone makes them tappable (matched in the escaped text).
LINK = re.compile(r"https?://(?:(?!&quot;|&#x27;|&lt;|&gt;)[^\s<>\"'])+")


def _linked(body: str) -> str:
    """The body, escaped, with its http(s) links clickable (opening in a new tab)."""
    return LINK.sub(
        lambda m: f'<a class=link href="{m.group(0)}" target=_blank rel="noopener noreferrer">'
        f"{m.group(0)}</a>",
        escape(body),
    )


CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f3f4f6;
color:#111}
header{background:#111827;color:#f9fafb;padding:12px 20px}header h1{margin:0;font-size:18px}
header p{margin:4px 0 0;color:#9ca3af}header a{color:#93c5fd}code{font-size:12px}
.wrap{padding:16px 20px}.notices{margin:0 0 12px;padding:0;list-style:none}
.notices li{background:#fef9c3;border:1px solid #fde047;border-radius:6px;padding:6px 10px;
margin-bottom:4px}
.panel{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;
margin-bottom:16px}
.panel form{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-end}
.panel label{display:flex;flex-direction:column;font-size:12px;color:#374151}
.panel input[type=number]{width:90px}.panel textarea{width:220px;height:48px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:16px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:10px 12px;
display:flex;flex-direction:column}
.card h2{font-size:15px;margin:0 0 8px;word-break:break-all}
.thread{list-style:none;margin:0;padding:0;flex:1}
.msg{border-radius:10px;padding:6px 10px;margin:6px 0;max-width:88%}
.out{background:#e0f2fe;margin-right:auto}.in{background:#dcfce7;margin-left:auto}
.meta{font-size:11px;color:#4b5563}.subject{font-weight:600}
.body{white-space:pre-wrap;margin:4px 0;font:inherit;word-break:break-word}
.badge{display:inline-block;border-radius:4px;padding:0 5px;font-size:11px;background:#e5e7eb}
.ok{background:#bbf7d0}.bad{background:#fecaca}
iframe{width:100%;height:260px;border:1px solid #d1d5db;background:#fff}
details{font-size:12px}details ul{margin:2px 0;padding-left:18px}
.reply textarea{width:100%;box-sizing:border-box;height:52px}
.reply input[type=text]{width:100%;box-sizing:border-box}
.actions button{font-size:11px}table{border-collapse:collapse;font-size:12px;background:#fff}
td,th{border:1px solid #e5e7eb;padding:3px 6px;text-align:left}
"""

# Reload when something changed, unless the user is typing; keep opened <details> open.
SCRIPT = """
(function(){
  var version = %(version)s;
  var key = 'sim-open';
  var open = JSON.parse(sessionStorage.getItem(key) || '[]');
  document.querySelectorAll('details[id]').forEach(function(d){
    if (open.indexOf(d.id) >= 0) d.open = true;
    d.addEventListener('toggle', function(){
      var ids = JSON.parse(sessionStorage.getItem(key) || '[]')
        .filter(function(x){ return x !== d.id; });
      if (d.open) ids.push(d.id);
      sessionStorage.setItem(key, JSON.stringify(ids));
    });
  });
  function busy(){
    var a = document.activeElement;
    if (a && (a.tagName === 'TEXTAREA' || a.tagName === 'INPUT' || a.tagName === 'SELECT'))
      return true;
    return Array.prototype.some.call(document.querySelectorAll('.reply textarea'),
      function(t){ return t.value.length > 0; });
  }
  setInterval(function(){
    fetch('/_sim/health').then(function(r){ return r.json(); }).then(function(j){
      if (j.version !== version && !busy()) location.reload();
    }).catch(function(){});
  }, 3000);
})();
"""


def render_page(sim: Simulator) -> str:
    """The whole page as a string."""
    state = sim.state
    version = state.version
    messages = state.messages()
    customers: dict[str, list[Record]] = {}
    for record in messages:
        customers.setdefault(record["customer"], []).append(record)
    # Most recently active customer first.
    ordered = sorted(customers.items(), key=lambda item: item[1][-1]["received_at"], reverse=True)
    cards = "".join(_card(address, records) for address, records in ordered)
    if not cards:
        cards = "<p>No messages yet. Send one from Touchline and it appears here.</p>"
    notices = "".join(f"<li>{escape(text)}</li>" for text in state.notices())
    config = sim.config
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Touchline provider simulator</title><style>{CSS}</style></head><body>"
        "<header><h1>Touchline provider simulator</h1>"
        f"<p>Callbacks go to <code>{escape(config.public_base_url)}</code> · "
        f"Twilio account <code>{escape(config.account_sid)}</code> · "
        f"{len(messages)} messages, {len(state.rejected())} rejected · "
        '<a href="/_sim/messages">messages JSON</a> · <a href="/_sim/rejected">rejected JSON</a>'
        "</p></header><div class=wrap>"
        f"<ul class=notices>{notices}</ul>"
        f"{_settings_panel(sim)}"
        f"<main class=grid>{cards}</main>"
        f"{_rejected_table(sim)}"
        f"</div><script>{SCRIPT % {'version': json.dumps(version)}}</script></body></html>"
    )


def _card(address: str, records: list[Record]) -> str:
    channel = channel_for(address)
    items = "".join(_message(record) for record in records)
    last_email = next((r for r in reversed(records) if r["direction"] == "outbound"), None)
    subject_box = ""
    if channel == "email":
        default = (last_email or {}).get("subject") or ""
        placeholder = f"Subject (default: Re: {default})" if default else "Subject"
        subject_box = f'<input type=text name=subject placeholder="{escape(placeholder)}">'
    return (
        f"<article class=card><h2><span class=badge>{escape(channel)}</span> "
        f"{escape(address)}</h2><ol class=thread>{items}</ol>"
        '<form class=reply method=post action="/_sim/reply_form">'
        f'<input type=hidden name=customer value="{escape(address)}">'
        f'<input type=hidden name=channel value="{escape(channel)}">{subject_box}'
        '<textarea name=body required placeholder="Reply as this customer…"></textarea>'
        "<button type=submit>Reply as customer</button></form></article>"
    )


def _message(record: Record) -> str:
    outbound = record["direction"] == "outbound"
    status = record.get("status") or ""
    status_class = "bad" if status in FAILED else "ok" if status else ""
    label = "Touchline →" if outbound else "← customer"
    parts = [
        f'<li class="msg {"out" if outbound else "in"}"><div class=meta>{escape(label)} · '
        f"{escape(record['channel'])} · {escape(record['received_at'][11:19])} UTC · "
        f'<span class="badge {status_class}">{escape(status)}</span>'
    ]
    if record.get("error_code"):
        parts.append(f" · error {escape(str(record['error_code']))}")
    parts.append("</div>")
    if record.get("subject"):
        parts.append(f"<div class=subject>{escape(record['subject'])}</div>")
    if record.get("body"):
        parts.append(f"<pre class=body>{_linked(record['body'])}</pre>")
    if record.get("content_sid"):
        variables = json.dumps(record.get("content_variables") or {}, ensure_ascii=False)
        parts.append(
            f"<div class=meta>template {escape(record['content_sid'])} "
            f"variables <code>{escape(variables)}</code></div>"
        )
    if record.get("template_id"):
        parts.append(f"<div class=meta>dynamic template {escape(record['template_id'])}</div>")
    for url in record.get("media_urls") or []:
        parts.append(f"<div class=meta>media: {escape(url)}</div>")
    uid = escape(record["key"], quote=True)
    if record.get("html"):
        parts.append(
            f'<details id="html-{uid}"><summary>HTML preview</summary>'
            f'<iframe sandbox="" referrerpolicy="no-referrer" srcdoc="{escape(record["html"])}">'
            "</iframe></details>"
        )
    parts.append(_history(record))
    if outbound:
        parts.append(_actions(record))
    parts.append("</li>")
    return "".join(parts)


def _history(record: Record) -> str:
    lines = [
        f"<li>{escape(entry['at'][11:23])} {escape(entry['status'])}"
        + (f" ({escape(str(entry['error_code']))})" if entry.get("error_code") else "")
        + "</li>"
        for entry in record.get("status_history", [])
    ]
    for event in record.get("events", []):
        if event.get("skipped"):
            result = f"not posted: {event['skipped']}"
        elif event.get("http_status") is not None:
            result = f"HTTP {event['http_status']}"
        else:
            result = f"error: {event.get('error')}"
        lines.append(
            f"<li>{escape(event['at'][11:23])} posted {escape(event['name'])} "
            f"(attempt {escape(str(event.get('attempt', 1)))}) → {escape(result)}</li>"
        )
    extra = ""
    if record.get("touchline_id"):
        extra = f" · Touchline id {escape(record['touchline_id'])}"
    return (
        f'<details id="hist-{escape(record["key"], quote=True)}"><summary>'
        f"history · {escape(record['id'])}{extra}</summary><ul>{''.join(lines)}</ul></details>"
    )


def _actions(record: Record) -> str:
    buttons: list[tuple[str, str]] = []
    if record["channel"] == "email":
        buttons = [*EMAIL_ACTIONS, ("spamreport", "spam report")]
    elif record["channel"] == "whatsapp" and record.get("status_callback"):
        buttons = [("read", "read")]
    if not buttons:
        return ""
    rendered = "".join(
        f'<button type=submit name=event value="{escape(value)}">{escape(label)}</button> '
        for value, label in buttons
    )
    return (
        '<form class=actions method=post action="/_sim/event_form">'
        f'<input type=hidden name=message_id value="{escape(record["key"])}">{rendered}</form>'
    )


def _settings_panel(sim: Simulator) -> str:
    inj = sim.state.injection.as_dict()

    def number(name: str, step: str = "1") -> str:
        return (
            f"<label>{escape(name)}<input type=number name={name} min=0 step={step} "
            f'value="{escape(str(inj[name]))}"></label>'
        )

    def checkbox(name: str) -> str:
        checked = " checked" if inj[name] else ""
        return f"<label>{escape(name)}<input type=checkbox name={name} value=1{checked}></label>"

    def mapping(name: str) -> str:
        text = "\n".join(f"{address}={code}" for address, code in inj[name].items())
        return (
            f"<label>{escape(name)} (address=code per line)"
            f"<textarea name={name}>{escape(text)}</textarea></label>"
        )

    statuses = "".join(
        f"<option value={code}{' selected' if inj['error_status'] == code else ''}>{code}</option>"
        for code in (429, 500, 502, 503, 504)
    )
    return (
        "<section class=panel><strong>Failure injection</strong>"
        '<form method=post action="/_sim/config_form">'
        f"{number('latency_ms')}{number('error_rate', '0.01')}"
        f"<label>error_status<select name=error_status>{statuses}</select></label>"
        f"{number('retry_after')}{number('callback_delay_ms')}"
        f"{checkbox('callbacks')}{checkbox('whatsapp_read')}{checkbox('enforce_whatsapp_window')}"
        f"{mapping('fail_numbers')}{mapping('undeliverable')}"
        "<button type=submit>Apply</button></form>"
        '<form method=post action="/_sim/reset_form" style="margin-top:6px">'
        "<button type=submit>Forget all messages and reset settings</button></form></section>"
    )


def _rejected_table(sim: Simulator) -> str:
    rows = sim.state.rejected()[-20:]
    if not rows:
        return ""
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(row.get(name) if row.get(name) is not None else ''))}</td>"
            for name in ("received_at", "provider", "to", "http_status", "code", "reason")
        )
        + "</tr>"
        for row in reversed(rows)
    )
    head = "".join(
        f"<th>{name}</th>" for name in ("at", "provider", "to", "HTTP", "code", "reason")
    )
    return f"<h3>Rejected requests (latest 20)</h3><table><tr>{head}</tr>{body}</table>"


def parse_mapping(text: str) -> dict[str, Any]:
    """`address=code` lines from the settings form into a dict."""
    result: dict[str, Any] = {}
    for line in text.splitlines():
        address, sep, code = line.strip().partition("=")
        if sep and address.strip():
            result[address.strip()] = code.strip()
    return result
