"""Outbound webhooks are not a port scanner: hostile URLs are refused when subscribing, every
delivery re-checks where the name resolves and connects to the checked address only,
redirects are not followed, loopback needs the explicit allow-list, and the attempt log
keeps only a short printable excerpt (none at all without an HTTP answer)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from outbound import egress, services
from outbound.models import WebhookAttempt, WebhookDelivery, WebhookSubscription

from .conftest import Receiver, dispatch_at
from .test_api import URL, attrs

pytestmark = pytest.mark.django_db

HOSTILE_URLS = [
    # numeric spellings of 127.0.0.1 the C resolver accepts
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    # loopback, unspecified, and their IPv6 / IPv4-mapped / 6to4 / NAT64 forms
    "http://127.0.0.1/hooks",
    "http://localhost/hooks",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[64:ff9b::a00:1]/",
    "http://[::127.0.0.1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    # cloud metadata, private, shared, multicast, reserved
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://[fd00::1]/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    # internal services
    "http://127.0.0.1:6379/",
    "http://localhost:5432/",
    "http://[::1]:6379/",
    # user-info and other schemes
    "http://user:pass@hooks.example.com/",
    "https://token@hooks.example.com/",
    "ftp://hooks.example.com/in",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_urls_are_refused_at_creation_with_a_field_error(api, url):
    response = api.post(URL, {"url": url, "event_types": ["message.sent"]}, format="json")

    assert response.status_code == 400, response.content
    assert set(attrs(response)) == {"url"}
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_the_destination_check_itself_refuses_each_hostile_url(url):
    # Independent of Django's URL syntax check, which rejects some of these for other reasons.
    with pytest.raises(egress.Refused):
        egress.url_check(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://a\x00b.example.com/",
        "http://\uff10x7f.1/",  # fullwidth digits: 0x7f.1 once IDNA-encoded
        "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",
        "http://-bad-.example.com/",
        "http://hooks.example.com:0/",
        "http://[fe80::1%25eth0]/",
        "http://[::1/",
    ],
)
def test_malformed_hosts_are_refused_with_a_reason_not_a_crash(api, url):
    with pytest.raises(egress.Refused):
        egress.url_check(url)
    response = api.post(URL, {"url": url, "event_types": ["message.sent"]}, format="json")
    assert response.status_code == 400
    assert set(attrs(response)) == {"url"}


def test_a_lone_surrogate_in_the_host_is_refused_not_a_crash():
    # (The JSON API cannot even carry one; the model validator sees whatever a caller saves.)
    with pytest.raises(ValidationError):
        WebhookSubscription(
            url="http://\ud800.example.com/", event_types=["message.sent"]
        ).full_clean()


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/touchline",
        "http://93.184.215.14:8080/in?x=1",
        "https://[2606:4700::1111]/h",
        "http://[64:ff9b::5db8:d70e]/h",  # NAT64 of a public IPv4 address
    ],
)
def test_public_addresses_and_unresolved_names_are_accepted(api, url):
    response = api.post(URL, {"url": url, "event_types": ["message.sent"]}, format="json")
    assert response.status_code == 201, response.content


def test_a_patch_to_an_internal_url_is_refused_and_changes_nothing(api, dns):
    created = api.post(
        URL, {"url": "https://hooks.example.com/in", "event_types": ["message.sent"]}, format="json"
    ).json()

    response = api.patch(f"{URL}{created['id']}/", {"url": "http://[::1]:5432/"}, format="json")

    assert response.status_code == 400
    assert set(attrs(response)) == {"url"}
    assert WebhookSubscription.objects.get().url == "https://hooks.example.com/in"


def test_a_name_that_resolves_inside_is_refused_at_creation(api, dns):
    dns["intranet.example.com"] = ["93.184.215.14", "10.1.2.3"]  # one public, one private

    response = api.post(
        URL,
        {"url": "https://intranet.example.com/h", "event_types": ["message.sent"]},
        format="json",
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["attr"] == "url"
    assert error["detail"] == (
        "intranet.example.com resolves to a private address, not in "
        "OUTBOUND_WEBHOOK_ALLOWED_NETWORKS."
    )
    assert "10.1.2.3" not in response.content.decode()  # internal DNS is not disclosed


def test_the_admin_form_refuses_an_internal_url(admin_client):
    response = admin_client.post(
        "/admin/outbound/webhooksubscription/add/",
        {"url": "http://169.254.169.254/latest/", "event_types": ["message.sent"]},
    )
    assert response.status_code == 200
    assert "link-local" in str(response.context["adminform"].form.errors["url"])
    assert not WebhookSubscription.objects.exists()


# --- The allow-list --------------------------------------------------------------------


def test_the_local_receiver_is_refused_without_the_allow_list(receiver, subscribe, settings):
    subscription = subscribe("message.sent")  # allowed: the receiver fixture lists its port
    settings.OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = []

    with pytest.raises(ValidationError) as refused:
        services.subscription_create(url=receiver.url, event_types=["message.sent"])
    assert "loopback" in str(refused.value.message_dict["url"])

    delivery = services.ping_send(subscription=subscription)
    from outbound.tasks import deliver_webhook

    assert deliver_webhook(delivery.pk, 0) == "failed"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, None)
    [attempt] = delivery.attempt_log.all()
    assert attempt.error.startswith("refused: 127.0.0.1 is a loopback address")
    assert (attempt.status_code, attempt.response_body) == (None, "")
    assert receiver.requests == []


def test_the_allow_list_is_exact_about_ports(receiver, settings):
    settings.OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = [f"127.0.0.1:{receiver.port}", "10.8.0.0/16"]
    egress.url_check(receiver.url)
    egress.url_check("http://10.8.3.4:9999/h")
    with pytest.raises(egress.Refused):
        egress.url_check(f"http://127.0.0.1:{receiver.port + 1}/h")
    with pytest.raises(egress.Refused):
        egress.url_check("http://10.9.0.1/h")
    settings.OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = ["0.0.0.0/0"]
    with pytest.raises(egress.Refused):  # never unspecified or multicast, whatever the list
        egress.url_check("http://0.0.0.0/h")


def test_a_malformed_allow_list_entry_is_a_configuration_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.OUTBOUND_WEBHOOK_ALLOWED_NETWORKS = ["localhost:9000"]
    with pytest.raises(ImproperlyConfigured, match="localhost:9000"):
        egress.url_check("http://10.0.0.1/")


# --- At delivery -----------------------------------------------------------------------


def test_a_name_that_later_resolves_inside_is_refused_at_delivery_and_not_retried(
    receiver, ping, dns
):
    # Does not resolve when subscribing: accepted, and checked again at every delivery.
    subscription = services.subscription_create(
        url="https://hooks.example.com/in", event_types=["message.sent"]
    )
    dns["hooks.example.com"] = ["169.254.169.254"]

    delivery = ping(subscription)
    dispatch_at(timezone.now() + dt.timedelta(days=2))

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, None)
    [attempt] = delivery.attempt_log.all()
    assert attempt.error == (
        "refused: hooks.example.com resolves to a link-local address, not in "
        "OUTBOUND_WEBHOOK_ALLOWED_NETWORKS."
    )
    assert attempt.response_body == ""


def test_a_name_that_does_not_resolve_at_delivery_is_retried(receiver, ping):
    subscription = services.subscription_create(
        url="https://nowhere.example.com/in", event_types=["message.sent"]
    )

    delivery = ping(subscription)

    assert (delivery.status, delivery.attempts) == ("pending", 1)
    [attempt] = delivery.attempt_log.all()
    assert attempt.error.startswith("DNS: nowhere.example.com does not resolve")
    assert (attempt.status_code, attempt.response_body) == (None, "")


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(
    receiver, ping, dns, settings
):
    """DNS rebinding: the name answers an allowed address to the check, then a refused one
    (127.0.0.2, where nothing listens) to anyone who asks again. The request must still reach
    the checked address, with the name in the Host header, after exactly one lookup."""
    lookups = []

    def rebinding() -> list[str]:
        lookups.append(1)
        return ["127.0.0.1"] if len(lookups) <= 2 else ["127.0.0.2"]

    dns["rebind.example.com"] = rebinding
    url = f"http://rebind.example.com:{receiver.port}/hooks"
    subscription = services.subscription_create(url=url, event_types=["message.sent"])
    assert len(lookups) == 1  # the check when subscribing

    delivery = ping(subscription)

    assert delivery.status == "succeeded", list(delivery.attempt_log.values("error"))
    assert len(lookups) == 2  # one more for the delivery's check, none to connect
    [request] = receiver.requests
    assert request.headers["host"] == f"rebind.example.com:{receiver.port}"
    assert request.path == "/hooks"


def test_a_redirect_to_an_internal_address_is_not_followed(receiver, subscribe, ping):
    internal = Receiver()  # another local service, not on the allow-list
    internal.thread.start()
    try:
        subscription = subscribe("message.sent")
        receiver.respond(
            (307, {"Location": internal.url}),
            (302, {"Location": "http://169.254.169.254/latest/meta-data/"}),
        )

        first = ping(subscription)
        second = ping(subscription)
        dispatch_at(timezone.now() + dt.timedelta(days=2))

        for delivery, code in ((first, 307), (second, 302)):
            delivery.refresh_from_db()
            assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
                "failed",
                1,
                code,
            )
        assert internal.requests == []
        assert len(receiver.requests) == 2
    finally:
        internal.server.shutdown()
        internal.server.server_close()


# --- What the attempt log keeps --------------------------------------------------------


def test_the_log_keeps_a_short_printable_excerpt_of_the_answer(api, receiver, subscribe, ping):
    subscription = subscribe("message.sent")
    body = (
        b"\x1b[2Jredis_version:7.2.4\r\nrole:master\x00\x07\tkeys=42\n" + "é".encode() + b"x" * 5000
    )
    receiver.respond((500, {}, body))

    delivery = ping(subscription)

    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code == 500
    assert len(attempt.response_body) == 256
    assert attempt.response_body.startswith("[2Jredis_version:7.2.4  role:master keys=42 éxxx")
    assert attempt.response_body.isprintable()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT response_body FROM outbound_webhookattempt WHERE id = %s", [attempt.pk]
        )
        assert cursor.fetchone()[0] == attempt.response_body
    listed = api.get(f"{URL}{subscription.pk}/deliveries/").json()["results"]
    [logged] = listed[0]["attempt_log"]
    assert logged["response_body"] == attempt.response_body
    assert logged["status_code"] == 500


def test_no_body_is_kept_without_an_http_answer_and_the_database_says_so(subscribe):
    subscription = subscribe("message.sent")
    delivery = services.ping_send(subscription=subscription)
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=timezone.now(),
            status_code=None,
            error="ConnectionError",
            response_body="leaked",
        )
    assert WebhookDelivery.objects.get().attempt_log.count() == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"ok", "ok"),
        (b"  line one\r\nline two\x00\x1f\x7f\n", "line one  line two"),
        (b"\xff\xfe bad utf-8", "\ufffd\ufffd bad utf-8"),
        ("\u202eevil\u200b".encode(), "evil"),  # format characters (bidi, zero width) too
        (b"y" * 2000, "y" * 256),
    ],
)
def test_excerpt(raw, expected):
    assert egress.excerpt(raw) == expected
