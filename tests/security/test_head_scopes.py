"""HEAD runs a view's GET code (Django routes it there), so it needs GET's scope; a method a
view has but grants no scope for is refused rather than let through."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audiences.services import segment_create
from audit.models import AuditEntry
from messaging.models import ApiKey

pytestmark = pytest.mark.django_db


def client_with(*scopes: str) -> APIClient:
    _, key = ApiKey.objects.create_key(name="k", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.mark.parametrize(
    "path",
    ["/api/v1/segments/", "/api/v1/segments/vip/count/", "/api/v1/segments/vip/export/"],
)
def test_head_needs_the_scope_get_needs(path):
    segment_create(name="VIP", slug="vip", kind="dynamic", definition={"all": []})
    before = AuditEntry.objects.count()
    refused = client_with("events:write", "contacts:read").head(path)
    assert refused.status_code == 403
    assert AuditEntry.objects.count() == before  # the export did not run
    allowed = client_with("segments:read", "contacts:read").head(path)
    assert allowed.status_code == 200


def test_a_wrong_method_is_still_a_405():
    response = client_with("segments:read").put("/api/v1/segments/vip/count/", {}, format="json")
    assert response.status_code == 405
