"""The simulator's HTTP server: routes the Twilio and SendGrid fakes, the page, the page's forms
and the JSON control endpoints; `start_simulator` runs it in a daemon thread."""

from __future__ import annotations

import logging
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from . import sendgrid_api, twilio_api
from .callbacks import Dispatcher
from .config import SimulatorConfig
from .customer import channel_for, post_event
from .customer import reply as post_reply
from .page import parse_mapping, render_page
from .state import Record, SimulatorState
from .wire import Reply, Request

logger = logging.getLogger("channels_app.simulator")

MAX_BODY_BYTES = 10 * 1024 * 1024
BOOLEAN_SETTINGS = ("callbacks", "whatsapp_read", "enforce_whatsapp_window")


class Simulator:
    """A running provider simulator: HTTP server thread, recorded messages, callback workers."""

    def __init__(self, config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.state = SimulatorState(config.injection())
        self.rng = random.Random()
        self._server = _Server((host, port), _Handler)  # binds now: OSError if the port is taken
        self._server.simulator = self
        self.dispatcher = Dispatcher()
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"provider-simulator-{self.port}",
            daemon=True,
        )
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8025 (use as TWILIO_API_BASE_URL/SENDGRID_API_HOST)."""
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Simulator:
        """Serve in the background thread."""
        self._thread.start()
        return self

    def messages(
        self,
        to: str | None = None,
        *,
        channel: str | None = None,
        direction: str | None = None,
        provider: str | None = None,
        touchline_id: str | None = None,
    ) -> list[Record]:
        """Copies of recorded messages (both directions), oldest first, filtered exactly."""
        return self.state.messages(
            to=to,
            channel=channel,
            direction=direction,
            provider=provider,
            touchline_id=touchline_id,
        )

    def rejected(self) -> list[Record]:
        """Copies of send requests answered with an error (auth, validation, injected, fail)."""
        return self.state.rejected()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change failure injection at runtime (ValueError on bad input); returns the settings."""
        return self.state.configure(changes).as_dict()

    def reset(self) -> None:
        """Forget recorded messages and pending callbacks; restore the configured injection."""
        self.state.reset()

    def reply(
        self,
        channel: str,
        customer: str,
        body: str,
        *,
        subject: str | None = None,
        in_reply_to_id: str | None = None,
        profile_name: str | None = None,
    ) -> requests.Response:
        """Post a signed inbound webhook to Touchline as if `customer` replied; returns
        Touchline's response (raises requests' errors if Touchline is unreachable)."""
        return post_reply(
            self,
            channel=channel,
            customer=customer,
            body=body,
            subject=subject,
            in_reply_to_id=in_reply_to_id,
            profile_name=profile_name,
        )

    def event(
        self, message_id: str, event: str, *, to: str | None = None, error_code: int | None = None
    ) -> requests.Response:
        """Post one extra signed status callback (Twilio) or event (SendGrid) for a message."""
        return post_event(self, message_id=message_id, event=event, to=to, error_code=error_code)

    def wait_for(
        self, message_id: str, status: str, *, timeout: float = 5.0, to: str | None = None
    ) -> Record:
        """Block until the message reached `status` and its callback to Touchline is finished
        (answered, given up, or nothing to post); TimeoutError otherwise. Returns the message."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.state.find(message_id, to=to)
            if record and status in record["settled"]:
                return record
            if time.monotonic() > deadline:
                current = record["status"] if record else "unknown message"
                raise TimeoutError(f"{message_id} did not reach {status!r} (now {current!r})")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop serving and drop pending callbacks. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.dispatcher.stop()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_simulator(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0) -> Simulator:
    """Start a simulator serving in a daemon thread; port 0 picks a free port (see `.url`)."""
    return Simulator(config, host, port).start()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open many connections at once.
    request_queue_size = 128
    simulator: Simulator


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as the SDKs' sessions expect; every response sets Content-Length.
    protocol_version = "HTTP/1.1"
    server_version = "TouchlineProviderSimulator/1.0"
    # Idle keep-alive connections are dropped after this many seconds.
    timeout = 60
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus delayed ACKs
    # stall every keep-alive response by ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are logged once, with their timing, in _handle.
        pass

    def _handle(self) -> None:
        started = time.monotonic()
        sim = self.server.simulator
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._write(Reply.json(413, {"error": "missing or too large Content-Length"}))
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        try:
            reply = route(sim, request)
        except Exception:
            logger.exception("simulator error on %s %s", self.command, self.path)
            reply = Reply.json(500, {"error": "simulator bug; see its log"})
        try:
            self._write(reply)
        except OSError:
            # The client went away mid-answer (a worker killed during the call). The provider
            # has the message all the same, and still reports its status.
            logger.info("client left before the answer to %s %s", self.command, self.path)
        logger.info(
            "%s %s -> %s (%.0f ms)",
            self.command,
            self.path,
            reply.status,
            (time.monotonic() - started) * 1000,
        )
        if reply.after is not None:
            try:
                reply.after()
            except Exception:
                logger.exception("simulator could not schedule callbacks for %s", self.path)

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
        self.wfile.flush()


def route(sim: Simulator, req: Request) -> Reply:
    """Dispatch one request."""
    if req.path.startswith("/2010-04-01/"):
        if req.method == "POST" and (match := twilio_api.MESSAGES_PATH.match(req.path)):
            return twilio_api.create_message(sim, req, match["account"])
        if req.method == "GET" and (match := twilio_api.MESSAGES_PATH.match(req.path)):
            return twilio_api.list_messages(sim, req, match["account"])
        if req.method == "GET" and (match := twilio_api.MESSAGE_PATH.match(req.path)):
            return twilio_api.fetch_message(sim, req, match["account"], match["sid"])
        return twilio_api.error_reply(404, 20404, path=req.path)
    if req.path == "/v3/mail/send":
        if req.method != "POST":
            return sendgrid_api.error_reply(405, "method not allowed")
        return sendgrid_api.mail_send(sim, req)
    if req.method == "GET":
        return _get(sim, req)
    if req.method == "POST" and req.path.startswith("/_sim/"):
        if not _same_origin(req):
            # The page's forms are the only browser callers; refuse other sites' forms.
            return Reply.json(403, {"error": "cross-origin request refused"})
        return _control(sim, req)
    return Reply.json(404, {"error": f"no route for {req.method} {req.path}"})


def _get(sim: Simulator, req: Request) -> Reply:
    if req.path == "/":
        page = render_page(sim).encode()
        return Reply(200, page, {"Content-Type": "text/html; charset=utf-8"})
    if req.path == "/_sim/health":
        return Reply.json(
            200,
            {
                "status": "ok",
                "version": sim.state.version,
                "messages": sim.state.count(),
                "settings": sim.state.injection.as_dict(),
            },
        )
    if req.path == "/_sim/messages":
        filters = {
            name: values[0]
            for name, values in req.query.items()
            if name in ("to", "channel", "direction", "provider", "touchline_id")
        }
        return Reply.json(200, sim.messages(**filters))
    if req.path == "/_sim/rejected":
        return Reply.json(200, sim.rejected())
    return Reply.json(404, {"error": f"no route for GET {req.path}"})


def _same_origin(req: Request) -> bool:
    origin = req.headers.get("origin")
    if origin is None:
        return True  # not a browser form: tests, scripts, curl
    return urlsplit(origin).netloc == req.headers.get("host", "")


def _control(sim: Simulator, req: Request) -> Reply:
    path = req.path
    if path in ("/_sim/reply_form", "/_sim/event_form", "/_sim/config_form", "/_sim/reset_form"):
        form = {name: values[-1] for name, values in req.form().items()}
        sim.state.notice(_form_action(sim, path, form))
        return Reply.redirect("/")
    if path == "/_sim/reset":
        sim.reset()
        return Reply.json(200, {"status": "reset"})
    try:
        data = req.json() if req.body else {}
    except ValueError:
        return Reply.json(400, {"error": "body must be JSON"})
    if not isinstance(data, dict):
        return Reply.json(400, {"error": "body must be a JSON object"})
    try:
        if path == "/_sim/config":
            return Reply.json(200, sim.configure(**data))
        if path == "/_sim/reply":
            response = sim.reply(
                str(data.get("channel") or ""),
                str(data.get("customer") or ""),
                str(data.get("body") or ""),
                subject=data.get("subject"),
                in_reply_to_id=data.get("in_reply_to_id"),
                profile_name=data.get("profile_name"),
            )
            return _touchline_result(response)
        if path == "/_sim/event":
            response = sim.event(
                str(data.get("message_id") or ""),
                str(data.get("event") or ""),
                to=data.get("to"),
                error_code=int(data["error_code"]) if data.get("error_code") else None,
            )
            return _touchline_result(response)
    except (ValueError, TypeError) as exc:
        return Reply.json(400, {"error": str(exc)})
    except LookupError as exc:
        return Reply.json(404, {"error": str(exc)})
    except requests.RequestException as exc:
        return Reply.json(502, {"error": f"Touchline unreachable: {exc}"})
    return Reply.json(404, {"error": f"no route for POST {path}"})


def _touchline_result(response: requests.Response) -> Reply:
    return Reply.json(
        200, {"touchline_status": response.status_code, "touchline_body": response.text[:2000]}
    )


def _form_action(sim: Simulator, path: str, form: dict[str, str]) -> str:
    """Run one page form; the returned line is shown at the top of the page."""
    try:
        if path == "/_sim/reply_form":
            address = form.get("customer", "")
            channel = form.get("channel") or channel_for(address)
            response = sim.reply(
                channel, address, form.get("body", ""), subject=form.get("subject") or None
            )
            return f"Reply from {address} posted: Touchline answered {response.status_code}"
        if path == "/_sim/event_form":
            response = sim.event(form.get("message_id", ""), form.get("event", ""))
            return f"{form.get('event')} posted: Touchline answered {response.status_code}"
        if path == "/_sim/reset_form":
            sim.reset()
            return "Forgot all messages; settings reset"
        changes: dict[str, Any] = {
            name: form[name]
            for name in ("latency_ms", "error_rate", "error_status", "retry_after")
            if form.get(name, "") != ""
        }
        if form.get("callback_delay_ms", "") != "":
            changes["callback_delay_ms"] = form["callback_delay_ms"]
        for name in BOOLEAN_SETTINGS:
            changes[name] = name in form  # unchecked boxes are simply absent
        for name in ("fail_numbers", "undeliverable"):
            if name in form:
                changes[name] = parse_mapping(form[name])
        sim.configure(**changes)
        return "Settings applied"
    except (ValueError, LookupError) as exc:
        return f"Error: {exc}"
    except requests.RequestException as exc:
        return f"Touchline unreachable: {exc}"
