"""Staff-authored templates render under limits (issue 12 item 3): loop iterations, range
size, output size, nesting depth and wall-clock time. Over a limit is refused naming it at
save time, at preview and by the messages API; at send time the message ends `failed` with
the reason on its timeline. Never a 500, never a stuck worker."""

from __future__ import annotations

import itertools
import json
import tracemalloc

import pytest
from django.core.exceptions import ValidationError

from journeys.models import Journey, Step
from journeys.services import event_ingest
from messaging import template_limits
from messaging.models import Message, Template, Touchpoint
from messaging.rendering import TemplateRenderError, render_content
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db

HUGE_RANGE = "{{ (1..10000000) | join: ',' | size }}"
DEEP_IFS = "{% if true %}" * 200 + "x" + "{% endif %}" * 200
PREVIEW = "/admin/touchline/templates/preview/"
# Each step multiplies the length by 10 (nine steps: 1 GB) ...
REPLACE_CHAIN = '{{ "a"' + ' | replace: "a", "aaaaaaaaaa"' * 9 + " | size }}"
# ... and here each split + join by 1,000 (two: 9 MB, three: 9 GB).
SPLIT_JOIN = "{{ 'abcdefghij'" + f" | split: '' | join: '{'x' * 1000}'" * 2 + " | size }}"


def _render(body: str, **event):
    return render_content(contact=ContactFactory(), body=body, event=event)


def _refusal(body: str, **event) -> str:
    with pytest.raises(TemplateRenderError) as caught:
        _render(body, **event)
    [message] = caught.value.errors["body"]
    return message


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        (HUGE_RANGE, "TEMPLATE_MAX_RANGE_SIZE"),
        ("{% for i in (1..5000) %}{% for j in (1..5000) %}{% endfor %}{% endfor %}", None),
        (DEEP_IFS, "TEMPLATE_MAX_NESTING_DEPTH"),
        ("{% if true %}" * 20_000 + "{% endif %}" * 20_000, "TEMPLATE_MAX_NESTING_DEPTH"),
        # Tags nested inside a `liquid` tag are not tags of the outer template.
        (
            "{% liquid\n" + "if true\n" * 40 + "echo 1\n" + "endif\n" * 40 + "%}",
            "TEMPLATE_MAX_NESTING_DEPTH",
        ),
        (
            "{% for i in (1..9000) %}{{ 'x' | append: 'yyyyyyyyyyyyyyyyyyyyyyyyyy' }}{% endfor %}",
            "TEMPLATE_MAX_OUTPUT_BYTES",
        ),
    ],
    ids=["range", "loops", "200-ifs", "20000-ifs", "liquid-tag", "output"],
)
def test_each_limit_is_refused_by_name(body, setting):
    message = _refusal(body)
    assert "limit reached" in message
    assert (setting or "TEMPLATE_MAX_LOOP_ITERATIONS") in message


def test_limits_come_from_settings(settings):
    settings.TEMPLATE_MAX_RANGE_SIZE = 5
    assert _render("{{ (1..5) | join: ',' }}").body == "1,2,3,4,5"
    assert "at most 5 items (TEMPLATE_MAX_RANGE_SIZE)" in _refusal("{{ (1..6) | join: ',' }}")
    settings.TEMPLATE_MAX_NESTING_DEPTH = 2
    assert _render("{% if true %}{% if true %}ok{% endif %}{% endif %}").body == "ok"
    assert "TEMPLATE_MAX_NESTING_DEPTH" in _refusal(
        "{% if true %}{% for i in (1..2) %}{% if true %}x{% endif %}{% endfor %}{% endif %}"
    )


def test_a_range_from_data_is_bounded_when_rendered():
    assert "TEMPLATE_MAX_RANGE_SIZE" in _refusal("{{ (1..event.n) | join: ',' }}", n=10**7)


def test_wall_clock_limit_stops_a_slow_render(monkeypatch, settings):
    # A clock that moves 1 s per look: the limit is checked between steps of the render
    # (lookups, filters, loops, writes), so a long render stops without threads or signals.
    settings.TEMPLATE_MAX_RENDER_SECONDS = 5
    ticks = itertools.count()
    monkeypatch.setattr(template_limits.time, "monotonic", lambda: float(next(ticks)))
    assert _render("{{ event.a }}", a="ok").body == "ok"  # a few looks: inside the limit
    message = _refusal(
        "{% for i in (1..100) %}{{ (1..10000) | join: ',' | size }}{% endfor %}", n=1
    )
    assert "render time limit reached" in message and "TEMPLATE_MAX_RENDER_SECONDS" in message


def test_errors_that_are_not_liquid_ones_are_refusals_too():
    # Python refuses to print an integer of more than 4300 digits (a ValueError).
    message = _refusal("{{ 99999999" + " | times: 99999999" * 700 + " }}")
    assert "could not be rendered" in message


def test_a_normal_template_still_renders():
    content = _render(
        "Hi {{ contact.nickname | default: 'there' }}: "
        "{% for i in (1..3) %}{{ i }}{% endfor %}{% if event.vip %} VIP{% endif %}",
        vip=True,
    )
    assert content.body == "Hi there: 123 VIP"


# --- Inside filter chains -------------------------------------------------------------


def _peak_bytes_while_refused(body: str, **event) -> tuple[str, int]:
    tracemalloc.start()
    try:
        message = _refusal(body, **event)
        return message, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("body", "event"),
    [
        (REPLACE_CHAIN, {}),
        (SPLIT_JOIN, {}),
        # Growing step by step, by a constant factor no projection covers: the check
        # after each filter stops it.
        ("{{ 'x'" + " | base64_encode" * 60 + " | size }}", {}),
        # One step that would build 100 MB: refused before the call, not after it.
        ("{{ event.s | replace: 'y', event.s | size }}", {"s": "y" * 10_000}),
        ("{{ event.a | join: event.s | size }}", {"a": list(range(10_000)), "s": "y" * 10_000}),
        ("{{ event.s | append: event.s | append: event.s | size }}", {"s": "y" * 90_000}),
        ("{{ event.s | prepend: event.s | prepend: event.s | size }}", {"s": "y" * 90_000}),
        (
            "{{ event.s | replace_first: 'y', event.s | replace_last: 'y', event.s | size }}",
            {"s": "y" * 90_000},
        ),
        ("{{ event.a | concat: event.a | concat: event.a | size }}", {"a": list(range(90_000))}),
        ("{{ event.s | split: '' | size }}", {"s": "y" * 300_000}),
        ("{{ event.s | truncate: 5, event.s | size }}", {"s": "y" * 300_000}),
        ("{{ 'now' | date: '" + "%1000Y" * 300 + "' | size }}", {}),  # strftime widths
    ],
    ids=[
        "replace",
        "split-join",
        "base64",
        "replace-one-step",
        "join-one-step",
        "append",
        "prepend",
        "replace-one",
        "concat",
        "split",
        "truncate-end",
        "date-width",
    ],
)
def test_a_filter_chain_is_refused_before_it_grows_past_the_output_limit(body, event):
    message, peak = _peak_bytes_while_refused(body, **event)
    assert "output size limit reached" in message and "TEMPLATE_MAX_OUTPUT_BYTES" in message
    assert peak < 50_000_000  # unrefused, `replace` needs 1.1 GB, the one-steps 100 MB


def test_the_filter_limit_comes_from_the_output_setting(settings):
    settings.TEMPLATE_MAX_OUTPUT_BYTES = 100
    assert _render("{{ 'a' | replace: 'a', 'bbbbbbbbbb' | replace: 'b', 'cccccccccc' }}").body == (
        "c" * 100
    )
    message = _refusal("{{ (1..10) | join: 'xxxxxxxxxx' | size }}")
    assert "at most 100 characters or items (TEMPLATE_MAX_OUTPUT_BYTES)" in message


def test_normal_templates_using_the_bounded_filters_still_render():
    content = _render(
        "{{ event.name | replace: '-', ' ' | replace_first: 'a', 'A' | replace_last: 'b', 'B' }}"
        "|{{ event.tags | concat: event.more | join: ', ' | prepend: '[' | append: ']' }}"
        "|{{ 'a,b,c' | split: ',' | join: '+' }}|{{ event.long | truncate: 8, '…' }}"
        "|{{ '2024-03-05' | date: '%d/%m/%Y' }}|{{ 'hi' | base64_encode | base64_decode }}",
        name="ab-ab-ab",
        tags=["x", "y"],
        more=["z"],
        long="a long sentence",
    )
    assert content.body == "Ab ab aB|[x, y, z]|a+b+c|a long …|05/03/2024|hi"


# --- Save time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        (HUGE_RANGE, "TEMPLATE_MAX_RANGE_SIZE"),
        (DEEP_IFS, "TEMPLATE_MAX_NESTING_DEPTH"),
        (REPLACE_CHAIN, "TEMPLATE_MAX_OUTPUT_BYTES"),
        (SPLIT_JOIN, "TEMPLATE_MAX_OUTPUT_BYTES"),
    ],
    ids=["range", "nesting", "replace-chain", "split-join"],
)
def test_saving_a_template_over_a_limit_is_refused_naming_it(body, setting):
    with pytest.raises(ValidationError) as caught:
        TemplateFactory(body=body)
    assert setting in " ".join(caught.value.message_dict["body"])
    assert not Template.objects.exists()


def test_admin_form_shows_the_limit(admin_client):
    response = admin_client.post(
        "/admin/messaging/template/add/",
        {
            "name": "Deep",
            "slug": "deep",
            "channel": "sms",
            "body": DEEP_IFS,
            "content_variables": "{}",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert "TEMPLATE_MAX_NESTING_DEPTH" in " ".join(errors["body"])
    assert not Template.objects.exists()


# --- Preview and the messages API ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        (HUGE_RANGE, "TEMPLATE_MAX_RANGE_SIZE"),
        (DEEP_IFS, "TEMPLATE_MAX_NESTING_DEPTH"),
        (REPLACE_CHAIN, "TEMPLATE_MAX_OUTPUT_BYTES"),
    ],
    ids=["range", "nesting", "replace-chain"],
)
def test_preview_refuses_with_a_400_naming_the_limit(admin_client, body, setting):
    payload = {"channel": "sms", "subject": "", "body": body, "html_body": ""}
    response = admin_client.post(PREVIEW, json.dumps(payload), content_type="application/json")
    assert response.status_code == 400
    answer = response.json()
    assert setting in " ".join(answer["errors"]["body"]) and answer["rendered"] is None


def test_preview_refuses_a_limit_only_real_data_reaches(admin_client):
    payload = {
        "channel": "sms",
        "body": "{{ (1..event.n) | join: ',' }}",
        "event": json.dumps({"n": 10**7}),
    }
    response = admin_client.post(PREVIEW, json.dumps(payload), content_type="application/json")
    assert response.status_code == 400
    assert "TEMPLATE_MAX_RANGE_SIZE" in " ".join(response.json()["errors"]["body"])


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        (HUGE_RANGE, "TEMPLATE_MAX_RANGE_SIZE"),
        (DEEP_IFS, "TEMPLATE_MAX_NESTING_DEPTH"),
        (REPLACE_CHAIN, "TEMPLATE_MAX_OUTPUT_BYTES"),
        (SPLIT_JOIN, "TEMPLATE_MAX_OUTPUT_BYTES"),
    ],
    ids=["range", "nesting", "replace-chain", "split-join"],
)
def test_messages_api_refuses_with_a_400_naming_the_limit(api, body, setting):
    response = api.post(
        "/api/v1/messages/",
        {
            "contact": {"external_id": "c-1", "phone": "+14155552671"},
            "channel": "sms",
            "body": body,
        },
        format="json",
    )
    assert response.status_code == 400, response.content[:300]
    [error] = response.json()["errors"]
    assert error["attr"] == "body" and setting in error["detail"]
    assert not Message.objects.exists()


# --- Send time ----------------------------------------------------------------------------


def test_a_message_over_a_limit_at_send_time_fails_with_the_reason(
    simulator, django_capture_on_commit_callbacks
):
    # Saved fine (the sample event has no `n`); this contact's event makes the range huge.
    TemplateFactory(slug="count", channel="sms", body="{{ (1..event.n) | join: ',' }}")
    journey = Journey.objects.create(
        name="Count", slug="count", status="active", trigger_event="order.completed"
    )
    Step.objects.create(
        journey=journey,
        position=0,
        key="send",
        kind="send",
        config={"template": "count", "channel": "sms", "fallback_channels": []},
    )
    contact = ContactFactory(phone="+14155552671")

    with django_capture_on_commit_callbacks(execute=True):
        event_ingest(name="order.completed", contact=contact, properties={"n": 10**7})

    message = Message.objects.get(contact=contact)
    assert message.status == "failed" and message.error_code == "template_error"
    assert "TEMPLATE_MAX_RANGE_SIZE" in message.error_message
    failed = Touchpoint.objects.get(contact=contact, kind="failed", message_id=message.pk)
    assert "TEMPLATE_MAX_RANGE_SIZE" in failed.data["reason"]
    assert simulator.messages() == []
