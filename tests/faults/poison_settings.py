"""Settings for the poison-message test's workers (DJANGO_SETTINGS_MODULE): config.settings
with a test-only SMS adapter that SIGKILLs its own worker process for marked messages.

- body starting with POISON_AFTER_CLAIM: the process dies inside `send()`, i.e. after
  message_deliver committed the `queued → sending` claim (a crash mid provider call);
- body starting with POISON_BEFORE_CLAIM: the process dies when message_deliver asks the
  adapter for its sender (rate limiting), i.e. before the claim (a crash while loading).

Each crash is appended to FAULTS_CRASH_LOG first, so the test can count them."""

from __future__ import annotations

import os
import signal
import sys

from channels_app.providers.twilio import TwilioSmsProvider
from config.settings import *  # noqa: F403
from config.settings import TOUCHLINE_PROVIDERS as _PROVIDERS

POISON_AFTER_CLAIM = "POISON-AFTER-CLAIM"
POISON_BEFORE_CLAIM = "POISON-BEFORE-CLAIM"

TOUCHLINE_PROVIDERS = {**_PROVIDERS, "sms": "tests.faults.poison_settings.PoisonSmsProvider"}


def _crash(phase: str, message_id: object) -> None:
    with open(os.environ["FAULTS_CRASH_LOG"], "a") as log:
        log.write(f"{phase} {message_id} {os.getpid()}\n")
        log.flush()
        os.fsync(log.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


class PoisonSmsProvider(TwilioSmsProvider):
    @property
    def sender(self) -> str:
        # message_deliver reads `get_provider(channel).sender` before it claims the message;
        # its `message_id` local names the message being delivered.
        message_id = sys._getframe(1).f_locals.get("message_id")
        if message_id:
            from messaging.models import Message

            body = Message.objects.filter(pk=message_id).values_list("body", flat=True).first()
            if body and body.startswith(POISON_BEFORE_CLAIM):
                _crash("before_claim", message_id)
        return super().sender

    def send(self, message):
        if message.body.startswith(POISON_AFTER_CLAIM):
            _crash("after_claim", message.message_id)
        return super().send(message)
