"""The committed OpenAPI schema (openapi.yaml) is what the code serves."""

from pathlib import Path

import yaml
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "openapi.yaml"


def test_committed_schema_matches_the_code():
    generated = OpenApiYamlRenderer().render(SchemaGenerator().get_schema(public=True))
    committed = yaml.safe_load(SCHEMA_FILE.read_text())
    assert yaml.safe_load(generated) == committed, (
        "openapi.yaml is out of date: run `make openapi` and commit the result."
    )


def test_every_operation_documents_its_auth_and_has_a_summary():
    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            assert operation.get("security"), f"{method.upper()} {path} has no security"


def test_docs_are_served_without_a_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html
    assert "/static/drf_spectacular_sidecar/" in html
    assert client.get("/api/schema/").status_code == 200
