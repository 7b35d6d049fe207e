"""Simulator configuration: identity and secrets, plus failure injection changeable at runtime."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Twilio's documented magic test numbers, so the usual test recipes behave as on Twilio.
DEFAULT_FAIL_NUMBERS: dict[str, int] = {
    "+15005550001": 21211,  # invalid number
    "+15005550004": 21610,  # recipient opted out (blocked by STOP)
    "+15005550009": 21614,  # not a mobile number
}
ERROR_STATUSES = (429, 500, 502, 503, 504)


def lookup_address(mapping: dict[str, int], address: str) -> int | None:
    """`mapping[address]`, also trying the bare number of a whatsapp: address and, for emails,
    any letter case."""
    for candidate in (address, address.removeprefix("whatsapp:")):
        if candidate in mapping:
            return mapping[candidate]
    if "@" in address:
        lowered = address.lower()
        for key, value in mapping.items():
            if key.lower() == lowered:
                return value
    return None


def _default_fail_numbers() -> dict[str, int]:
    return dict(DEFAULT_FAIL_NUMBERS)


@dataclass
class Injection:
    """Behaviour that tests and benchmarks change at runtime (`Simulator.configure`)."""

    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 429
    retry_after: int = 1
    fail_numbers: dict[str, int] = field(default_factory=_default_fail_numbers)
    undeliverable: dict[str, int] = field(default_factory=dict)
    callbacks: bool = True
    callback_delay_ms: int = 300
    whatsapp_read: bool = False
    # Off by default: Touchline enforces the 24-hour window itself; turn on to prove it does.
    enforce_whatsapp_window: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)

    def copy(self) -> Injection:
        """An independent copy (the dicts are copied too)."""
        return Injection(**self.as_dict())

    def updated(self, changes: dict[str, Any]) -> Injection:
        """A validated copy with `changes` applied; raises ValueError on a bad name or value."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        values = self.as_dict()
        for name, raw in changes.items():
            values[name] = _coerce(name, raw)
        return Injection(**values)


def _coerce(name: str, raw: Any) -> Any:
    """Check one injection value; accepts strings too, since forms post strings."""
    try:
        if name in ("latency_ms", "callback_delay_ms", "retry_after"):
            value: Any = int(raw)
            if value < 0:
                raise ValueError
        elif name == "error_rate":
            value = float(raw)
            if not 0.0 <= value <= 1.0:
                raise ValueError
        elif name == "error_status":
            value = int(raw)
            if value not in ERROR_STATUSES:
                raise ValueError
        elif name in ("fail_numbers", "undeliverable"):
            if not isinstance(raw, dict):
                raise ValueError
            value = {str(address): int(code) for address, code in raw.items()}
        else:
            if isinstance(raw, str):
                if raw.lower() not in ("1", "0", "true", "false", "on", "off", "yes", "no", ""):
                    raise ValueError
                value = raw.lower() in ("1", "true", "on", "yes")
            else:
                value = bool(raw)
    except (TypeError, ValueError):
        allowed = f" (one of {ERROR_STATUSES})" if name == "error_status" else ""
        raise ValueError(f"invalid value for {name}: {raw!r}{allowed}") from None
    return value


@dataclass
class SimulatorConfig:
    """Everything the simulator needs: provider credentials it accepts, where Touchline lives, and
    the default failure injection. It only ever holds simulator secrets, never real ones."""

    account_sid: str = "AC" + "0" * 30 + "51"
    auth_token: str = "simulator-twilio-auth-token"  # noqa: S105 (a fake's own fake secret)
    sendgrid_api_key: str = "SG.simulator-api-key"
    # ECDSA P-256 private key (PEM) for signing event webhooks; empty means no events are posted.
    sendgrid_signing_key_pem: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    inbound_parse_secret: str = ""
    sms_number: str = "+15005550006"
    whatsapp_number: str = "+14155238886"
    inbound_email_domain: str = "reply.touchline.example"
    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 429
    retry_after: int = 1
    fail_numbers: dict[str, int] = field(default_factory=_default_fail_numbers)
    undeliverable: dict[str, int] = field(default_factory=dict)
    callbacks: bool = True
    callback_delay_ms: int = 300
    whatsapp_read: bool = False
    enforce_whatsapp_window: bool = False

    def injection(self) -> Injection:
        """The runtime-changeable part of this config, validated."""
        names = [f.name for f in dataclasses.fields(Injection)]
        return Injection().updated({name: getattr(self, name) for name in names})
