"""RFC 8058 one-click unsubscribe: headers on marketing email (real SendGrid SDK against the
simulator), the signed /u/<token> endpoint, the consent ledger, and the footer link."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core import signing
from django.test import Client

from messaging import services
from messaging.models import ConsentChange, ConsentStatus, Message, Touchpoint
from messaging.policies import consent_status
from messaging.status import MessageStatus
from messaging.unsubscribe import unsubscribe_token
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db

ONE_CLICK = "List-Unsubscribe=One-Click"


def send(contact, category="marketing", **kwargs):
    kwargs.setdefault("body", "News for {{ contact.first_name }}")
    kwargs.setdefault("subject", "Spring news")
    message, _ = services.message_create(
        contact=contact, channel="email", category=category, **kwargs
    )
    return message, services.message_deliver(message_id=message.pk).result


def headers_of(record):
    return {k.lower(): v for k, v in (record.get("headers") or {}).items()}


def token_from(record) -> str:
    link = headers_of(record)["list-unsubscribe"]
    match = re.search(r"<https?://[^>]*/u/([^>/]+)>", link)
    assert match, link
    return match.group(1)


def post_one_click(token: str):
    client = Client(enforce_csrf_checks=True)
    return client.post(
        f"/u/{token}", data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )


def test_marketing_email_carries_the_one_click_headers(simulator, settings):
    settings.PUBLIC_BASE_URL = "https://touchline.example"
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@touchline.example"
    contact = ContactFactory(first_name="Ada")
    message, result = send(contact)
    assert result == "sent"
    [received] = simulator.messages()
    headers = headers_of(received)
    token = unsubscribe_token(contact_id=contact.pk, channel="email", message_id=message.pk)
    assert headers["list-unsubscribe"] == (
        f"<https://touchline.example/u/{token}>, "
        f"<mailto:unsubscribe@touchline.example?subject=unsubscribe>"
    )
    assert headers["list-unsubscribe-post"] == ONE_CLICK
    # The footer link (the GET page) in both parts.
    page = f"https://touchline.example/u/{token}"
    assert page in received["body"]
    assert page in (received["html"] or "") or not received["html"]


def test_mailto_part_is_omitted_without_the_setting(simulator, settings):
    settings.UNSUBSCRIBE_MAILTO = ""
    send(ContactFactory())
    [received] = simulator.messages()
    assert "mailto:" not in headers_of(received)["list-unsubscribe"]
    assert headers_of(received)["list-unsubscribe"].startswith("<http")


def test_transactional_email_has_neither_header_nor_footer(simulator):
    send(ContactFactory(), category="transactional")
    [received] = simulator.messages()
    assert "list-unsubscribe" not in headers_of(received)
    assert "list-unsubscribe-post" not in headers_of(received)
    assert "/u/" not in received["body"]


def test_html_footer_and_template_variable(simulator, settings):
    settings.PUBLIC_BASE_URL = "https://touchline.example"
    contact = ContactFactory()
    message, _ = send(contact, body="", html_body="<html><body><p>Hi</p></body></html>")
    [received] = simulator.messages()
    token = token_from(received)
    assert f'href="https://touchline.example/u/{token}"' in received["html"]
    assert received["html"].index("/u/") < received["html"].index("</body>")
    template = TemplateFactory(
        channel="email", subject="S", body="Bye: {{ unsubscribe_url }}", html_body=""
    )
    message, _ = send(contact, template=template, body="", subject="")
    token = unsubscribe_token(contact_id=contact.pk, channel="email", message_id=message.pk)
    # The template placed the link itself: no second footer.
    assert message.body == f"Bye: https://touchline.example/u/{token}"


def test_one_click_post_unsubscribes_once_and_later_marketing_is_skipped(simulator):
    contact = ContactFactory()
    message, _ = send(contact)
    token = token_from(simulator.messages()[0])

    response = post_one_click(token)
    assert response.status_code == 200
    assert consent_status(contact=contact, channel="email") == ConsentStatus.UNSUBSCRIBED
    [change] = ConsentChange.objects.filter(contact=contact, channel="email")
    assert (change.status, change.source, change.message_id) == (
        ConsentStatus.UNSUBSCRIBED,
        "one_click",
        message.pk,
    )
    assert (
        Touchpoint.objects.filter(contact=contact, kind="unsubscribed", message=message).count()
        == 1
    )

    # Idempotent: a second POST answers 200 and changes nothing.
    assert post_one_click(token).status_code == 200
    assert ConsentChange.objects.filter(contact=contact).count() == 1
    assert Touchpoint.objects.filter(contact=contact, kind="unsubscribed").count() == 1

    # Consent is never violated: the next marketing email does not leave.
    later, result = send(contact)
    assert result == "already skipped"
    later.refresh_from_db()
    assert later.status == MessageStatus.SKIPPED
    assert len(simulator.messages()) == 1


def test_get_shows_a_button_and_does_not_unsubscribe(simulator):
    contact = ContactFactory()
    send(contact)
    token = token_from(simulator.messages()[0])
    response = Client().get(f"/u/{token}")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'method="post"' in html and f'action="/u/{token}"' in html
    assert 'name="List-Unsubscribe" value="One-Click"' in html
    assert consent_status(contact=contact, channel="email") != ConsentStatus.UNSUBSCRIBED
    assert not ConsentChange.objects.filter(contact=contact).exists()


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "forged",
        "other-salt",
    ],
)
def test_forged_or_bad_token_is_400_and_changes_nothing(simulator, token):
    contact = ContactFactory()
    message, _ = send(contact)
    if token == "forged":
        other = ContactFactory()
        token = signing.Signer(
            key="not-the-secret-key-" + "x" * 40, salt="touchline.unsubscribe"
        ).sign_object({"c": other.pk, "ch": "email", "m": str(message.pk)})
    elif token == "other-salt":
        token = signing.Signer().sign_object({"c": contact.pk, "ch": "email", "m": str(message.pk)})
    for response in (post_one_click(token), Client().get(f"/u/{token}")):
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/plain")
    assert consent_status(contact=contact, channel="email") != ConsentStatus.UNSUBSCRIBED
    assert not ConsentChange.objects.exists()


def test_post_without_the_one_click_body_is_400(simulator):
    contact = ContactFactory()
    send(contact)
    token = token_from(simulator.messages()[0])
    response = Client().post(f"/u/{token}", data={"other": "x"})
    assert response.status_code == 400
    assert not ConsentChange.objects.exists()
    assert Message.objects.count() == 1


def test_hostile_tokens_never_500(simulator):
    contact = ContactFactory()
    gone = unsubscribe_token(contact_id=10**9, channel="email", message_id=uuid.uuid4())
    odd = signing.Signer(salt="touchline.unsubscribe").sign_object({"c": "x", "m": "nope"})
    for token in (gone, odd, "a%00b", "x" * 5000, "%ff%fe"):
        response = post_one_click(token)
        assert response.status_code == 400, token
    assert consent_status(contact=contact, channel="email") != ConsentStatus.UNSUBSCRIBED
    assert not ConsentChange.objects.exists()


def test_the_token_is_stable_and_compressed_garbage_is_refused(simulator):
    a = unsubscribe_token(contact_id=1, channel="email", message_id=uuid.UUID(int=1))
    assert a == unsubscribe_token(contact_id=1, channel="email", message_id=uuid.UUID(int=1))
    # A validly signed but broken compressed payload ('.' prefix) is a 400, not a 500.
    broken = signing.Signer(salt="touchline.unsubscribe").sign(".bm90LXpsaWI")
    assert post_one_click(broken).status_code == 400
