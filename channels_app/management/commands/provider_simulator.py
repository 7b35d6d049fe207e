"""`manage.py provider_simulator`: serve the local Twilio/SendGrid fake until Ctrl-C."""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from channels_app.simulator import SimulatorConfig, start_simulator
from channels_app.simulator.config import ERROR_STATUSES

logger = logging.getLogger("channels_app.simulator")


def config_from_settings(conf: Any, **overrides: Any) -> tuple[SimulatorConfig, list[str]]:
    """Build the simulator's config from Django settings; returns it with warnings to print.

    Raises CommandError when every provider has real credentials: the simulator must never
    hold real secrets, so a provider with real credentials gets random ones here instead."""
    twilio_simulated = bool(getattr(conf, "TWILIO_SIMULATED", False))
    sendgrid_simulated = bool(getattr(conf, "SENDGRID_SIMULATED", False))
    if not twilio_simulated and not sendgrid_simulated:
        raise CommandError(
            "Real Twilio and SendGrid credentials are configured (TWILIO_ACCOUNT_SID and "
            "SENDGRID_API_KEY are set), so Touchline talks to the real providers and the "
            "simulator would only hold real secrets. Unset them to use the simulator."
        )
    warnings: list[str] = []
    if twilio_simulated:
        account_sid, auth_token = conf.TWILIO_ACCOUNT_SID, conf.TWILIO_AUTH_TOKEN
    else:
        account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        warnings.append("Twilio uses real credentials: the simulator's Twilio API is unused.")
    if sendgrid_simulated:
        api_key = conf.SENDGRID_API_KEY
        signing_key = getattr(conf, "SIMULATOR_SENDGRID_SIGNING_KEY", "")
        parse_secret = getattr(conf, "INBOUND_PARSE_SECRET", "")
    else:
        api_key, signing_key = "SG." + secrets.token_urlsafe(32), ""
        parse_secret = secrets.token_urlsafe(24)
        warnings.append(
            "SendGrid uses real credentials: the simulator's SendGrid API is unused and it "
            "posts no email events or email replies Touchline would accept."
        )
    config = SimulatorConfig(
        account_sid=account_sid,
        auth_token=auth_token,
        sendgrid_api_key=api_key,
        sendgrid_signing_key_pem=signing_key,
        public_base_url=str(conf.PUBLIC_BASE_URL).rstrip("/"),
        inbound_parse_secret=parse_secret,
        sms_number=getattr(conf, "TWILIO_SMS_FROM", "") or "+15005550006",
        whatsapp_number=(getattr(conf, "TWILIO_WHATSAPP_FROM", "") or "+14155238886").removeprefix(
            "whatsapp:"
        ),
        inbound_email_domain=getattr(conf, "INBOUND_EMAIL_DOMAIN", "") or "reply.touchline.example",
    )
    for name, value in overrides.items():
        if value is not None:
            setattr(config, name, value)
    config.injection()  # validates the overrides now rather than at the first request
    return config, warnings


class Command(BaseCommand):
    help = "Serve the local Twilio Messages / SendGrid Mail Send simulator until Ctrl-C."
    # The simulator plays the outside world: it must start even while Touchline's checks fail.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default=None, help="default: settings.SIMULATOR_HOST")
        parser.add_argument(
            "--port", type=int, default=None, help="default: settings.SIMULATOR_PORT"
        )
        parser.add_argument("--latency-ms", type=int, default=None)
        parser.add_argument(
            "--error-rate", type=float, default=None, help="fraction of sends failed (0-1)"
        )
        parser.add_argument("--error-status", type=int, default=None, choices=ERROR_STATUSES)
        parser.add_argument("--callback-delay-ms", type=int, default=None)
        parser.add_argument(
            "--no-callbacks", action="store_true", help="post no status callbacks or events"
        )
        parser.add_argument(
            "--whatsapp-read", action="store_true", help="also post `read` for WhatsApp"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config, warnings = config_from_settings(
                settings,
                latency_ms=options["latency_ms"],
                error_rate=options["error_rate"],
                error_status=options["error_status"],
                callback_delay_ms=options["callback_delay_ms"],
                callbacks=False if options["no_callbacks"] else None,
                whatsapp_read=True if options["whatsapp_read"] else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for warning in warnings:
            self.stderr.write(self.style.WARNING(warning))
        host = options["host"] or settings.SIMULATOR_HOST
        port = options["port"] if options["port"] is not None else settings.SIMULATOR_PORT
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        logger.setLevel(logging.INFO)
        try:
            sim = start_simulator(config, host=host, port=port)
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from exc

        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        # SIGTERM (honcho, docker stop) stops as cleanly as Ctrl-C; SIGINT is set explicitly
        # because a shell starting us in the background leaves it ignored.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write(self.style.SUCCESS(f"Provider simulator on {sim.url}/ (Ctrl-C to stop)"))
        self.stdout.write(f"Callbacks and replies go to {config.public_base_url}")
        try:
            while not stop.wait(0.5):
                pass
        finally:
            sim.stop()
            self.stdout.write("Provider simulator stopped.")
