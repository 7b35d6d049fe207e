"""factory_boy factories for the models tests build on."""

from __future__ import annotations

import factory
from django.utils import timezone

from messaging.models import Consent, ConsentStatus, Contact, Template


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    external_id = factory.Sequence(lambda n: f"cust-{n}")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    phone = factory.Sequence(lambda n: f"+1415555{n % 10000:04d}")
    whatsapp = ""
    first_name = "Ada"
    last_name = "Lovelace"
    timezone = "Europe/London"


class TemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Template

    slug = factory.Sequence(lambda n: f"template-{n}")
    channel = "sms"
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    body = "Hi {{ contact.first_name }}, thanks for order {{ event.order_id }}!"


class ConsentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Consent

    contact = factory.SubFactory(ContactFactory)
    channel = "sms"
    status = ConsentStatus.SUBSCRIBED
    source = "api"
    changed_at = factory.LazyFunction(timezone.now)
