"""Templates: Liquid rendering against contact/event context; broken ones can't be saved."""

import pytest
from django.core.exceptions import ValidationError

from messaging.models import Template
from messaging.rendering import html_to_text, render_template
from tests.factories import ContactFactory


@pytest.mark.django_db
def test_renders_contact_attributes_and_event():
    contact = ContactFactory(first_name="Grace", attributes={"tier": "gold"})
    template = Template.objects.create(
        slug="thanks",
        channel="email",
        name="Thanks",
        subject="Order {{ event.order_id }}",
        body="Hi {{ contact.first_name }} ({{ contact.tier }}), {{ missing | default: 'ok' }}",
        html_body="<p>Hi <b>{{ contact.first_name | upcase }}</b></p>",
    )
    out = render_template(template, contact=contact, event={"order_id": 42})
    assert out.subject == "Order 42"
    assert out.body == "Hi Grace (gold), ok"
    assert out.html_body == "<p>Hi <b>GRACE</b></p>"


@pytest.mark.django_db
def test_liquid_cannot_reach_python_objects():
    contact = ContactFactory()
    template = Template.objects.create(
        slug="probe", channel="sms", name="Probe", body="{{ contact.__class__ }}{{ settings }}"
    )
    assert render_template(template, contact=contact).body == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "source"),
    [
        ("body", "Hi {{ contact.first_name }"),
        ("body", "{% if contact.vip %}VIP"),
        ("body", "{{ 1 | no_such_filter }}"),
        ("subject", "{% for x in y %}"),
    ],
)
def test_a_template_that_fails_to_parse_cannot_be_saved(field, source):
    template = Template(slug="bad", channel="email", name="Bad", subject="s", body="b")
    setattr(template, field, source)
    with pytest.raises(ValidationError) as err:
        template.save()
    assert field in err.value.message_dict
    assert "line 1" in err.value.message_dict[field][0]
    assert not Template.objects.filter(slug="bad").exists()


@pytest.mark.django_db
def test_error_names_the_line():
    template = Template(slug="bad", channel="sms", name="Bad", body="ok\nstill ok\n{{ oops }")
    with pytest.raises(ValidationError) as err:
        template.full_clean()
    assert "line 3" in err.value.message_dict["body"][0]


def test_html_to_text_keeps_paragraphs():
    assert html_to_text("<p>Hello <b>you</b></p><p>Bye</p><style>p{}</style>") == "Hello you\nBye"
