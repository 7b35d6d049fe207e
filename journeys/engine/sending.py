"""The send step, and sending a step's message on the first channel policy allows
(also used by survey steps and by the fallback after a failed message)."""

from __future__ import annotations

from typing import Any

from channels_app.channels import Channel
from messaging import policies
from messaging.models import Message, Template
from messaging.services import MessageRequestError, message_create

from ..models import JourneyMessage, Step
from .run import Continue, Run, Wait

DEFAULT_CHANNEL_ORDER = [Channel.SMS, Channel.WHATSAPP, Channel.EMAIL]


def _channel_order(run: Run, config: dict[str, Any]) -> list[str]:
    first = config.get("channel") or "preferred"
    if first == "from_event":
        first = run.event.get("channel") or "preferred"
    if first == "preferred":
        first = run.contact.preferred_channel or ""
    fallbacks = config.get("fallback_channels")
    if fallbacks is None:
        fallbacks = DEFAULT_CHANNEL_ORDER
    order: list[str] = []
    for channel in [first, *fallbacks]:
        if channel in Channel.values and channel not in order:
            order.append(channel)
    return order


def send_on_first_allowed_channel(
    run: Run,
    step: Step,
    *,
    template_slug: str,
    tried: list[str],
    suffix: str = "",
    hold_in_message: bool = False,
) -> Message | Wait | None:
    """Create the step's message on the first channel policy allows; hold or fall back with a
    touchpoint for each decision. None when no channel can take it. A hold makes the
    enrollment wait, or, with `hold_in_message` (a fallback sent while the enrollment has
    moved on), becomes a message queued until the hold ends."""
    contact, journey = run.contact, run.journey
    templates = {t.channel: t for t in Template.objects.filter(slug=template_slug)}
    for channel in _channel_order(run, step.config):
        if channel in tried:
            continue
        template = templates.get(channel)
        address = contact.address_for(channel)
        if template is None:
            decision = policies.Decision(False, f"no {channel} template {template_slug!r}")
        else:
            decision = policies.evaluate_send(
                contact=contact,
                channel=channel,
                category=journey.category,
                address=address,
                now=run.now,
                has_body=bool(template.body or template.html_body),
                has_content_sid=bool(template.content_sid),
                quiet_hours=(journey.quiet_hours_start, journey.quiet_hours_end),
                cap_action=journey.frequency_cap_action,
                topic=journey.topic,
            )
        if decision.held:
            run.touch(
                "send_held",
                step,
                dedupe=f"{step.pk}:held:{channel}:{decision.hold_until.isoformat()}",
                channel=channel,
                until=decision.hold_until.isoformat(),
                reason=decision.reason,
            )
            if not hold_in_message:
                return Wait(until=decision.hold_until)
        elif not decision.allowed:
            tried.append(channel)
            run.touch(
                "send_skipped",
                step,
                dedupe=f"{step.pk}{suffix}:skipped:{channel}",
                channel=channel,
                reason=decision.reason,
            )
            continue
        try:
            message, created = message_create(
                contact=contact,
                channel=channel,
                template=template,
                context=run.event,
                idempotency_key=f"journey:{run.enrollment.pk}:{step.pk}:{channel}{suffix}",
                source="journey",
                category=journey.category,
                topic=journey.topic,
                decision=decision,
                metadata={"journey": journey.slug, "step": step.key, "at": run.now.isoformat()},
                # A template over a limit (or broken by this contact's data) becomes a failed
                # message with the reason on the timeline; its failure tries the fallback.
                fail_on_render_error=True,
            )
        except MessageRequestError as exc:
            tried.append(channel)
            run.touch("send_skipped", step, channel=channel, reason=f"template error: {exc}")
            continue
        if created:
            JourneyMessage.objects.create(
                message=message, enrollment=run.enrollment, step=step, journey=journey
            )
        if tried:
            run.touch("fell_back", step, channel=channel, skipped=list(tried))
        tried.append(channel)
        return message
    return None


def _send(run: Run, step: Step, state: dict[str, Any]) -> Continue | Wait:
    tried = state.setdefault("tried", [])
    result = send_on_first_allowed_channel(
        run, step, template_slug=step.config.get("template", ""), tried=tried
    )
    if isinstance(result, Wait):
        return result
    if result is None:
        run.output(step, outcome="not_sent")
        return Continue()
    run.output(step, outcome="sent", channel=result.channel, message_id=str(result.pk))
    return Continue()
