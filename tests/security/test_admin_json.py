"""JSON that staff type into the admin follows the API's rules: NUL bytes, lone surrogates,
numbers that are not finite and absurd nesting are a form error, never a database error
(a 500) and never stored."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from audiences.models import Segment
from journeys.models import Journey, Step
from messaging.fields import SafeJSONField, SafeJSONFormField
from messaging.input_rules import validate_safe_json
from messaging.models import Contact, Template
from outbound.models import WebhookSubscription
from tests.audit.conftest import admin_form_data

pytestmark = pytest.mark.django_db

HOSTILE = {
    "infinite number": '{"a": 1e999}',
    "NUL in a value": '{"a": "x\\u0000y"}',
    "NUL in a key": '{"a\\u0000": 1}',
    "lone surrogate": '{"a": "\\ud800"}',
    "absurd nesting": '{"a": ' + "[" * 200 + "]" * 200 + "}",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_contact_attributes_in_the_admin_are_a_form_error(admin_client, text):
    contact = Contact.objects.create(external_id="c1", first_name="Ada", attributes={"x": 1})
    url = f"/admin/messaging/contact/{contact.pk}/change/"
    response = admin_client.post(url, admin_form_data(admin_client.get(url), attributes=text))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["attributes"]
    contact.refresh_from_db()
    assert contact.attributes == {"x": 1}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_template_content_variables_in_the_admin_are_a_form_error(admin_client, text):
    template = Template.objects.create(slug="t", name="T", channel="whatsapp", body="Hi")
    url = f"/admin/messaging/template/{template.pk}/change/"
    data = admin_form_data(admin_client.get(url), content_variables=text)
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["content_variables"]
    template.refresh_from_db()
    assert template.content_variables == {}


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (Contact, "attributes"),
        (Template, "content_variables"),
        (Journey, "trigger_filter"),
        (Step, "config"),
        (WebhookSubscription, "event_types"),
        (Segment, "definition"),
    ],
)
def test_every_staff_edited_json_field_carries_the_rule(model, field):
    db_field = model._meta.get_field(field)
    assert isinstance(db_field, SafeJSONField)
    assert validate_safe_json in db_field.validators
    assert isinstance(db_field.formfield(), SafeJSONFormField)


def test_a_refused_value_is_shown_back_as_typed_and_a_lone_surrogate_is_escaped():
    field = SafeJSONFormField()
    typed = '{"a": "\\ud800"}'
    assert str(field.prepare_value(field.bound_data(typed, None))) == typed
    assert field.prepare_value({"a": "café"}) == '{"a": "café"}'
    assert field.prepare_value({"a": "\ud800"}) == '{"a": "\\ud800"}'


def test_the_validator_names_where_the_value_is_bad():
    with pytest.raises(ValidationError, match=r"a\.1: Numbers must be finite"):
        validate_safe_json({"a": [1, float("inf")]})
    validate_safe_json({"a": [1, 2.5, "ok", None, {"b": True}]})


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_branch_rules_and_dry_run_json_are_form_errors(text):
    from journeys.forms import DryRunForm, StepForm

    rules = f'[{{"when": [{{"field": "x", "op": "eq", "value": {text}}}], "goto": "end"}}]'
    step = StepForm(data={"position": 0, "key": "b", "kind": "branch", "rules": rules})
    assert not step.is_valid() and "rules" in step.errors
    dry = DryRunForm(data={"contact": 1, "properties": text})
    assert not dry.is_valid() and "properties" in dry.errors
