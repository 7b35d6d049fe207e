"""Schemathesis fuzzes the committed OpenAPI schema against a live server (PostgreSQL in CI):
no 5xx, and every response matches the schema. Hooks (fuzz_hooks.py) add what the schema does
not allow: NUL bytes, lone surrogates, 1e999, deep nesting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from journeys.blueprints import install_blueprints
from messaging.api_auth import ALL_SCOPES, ApiKeyRateThrottle
from messaging.models import ApiKey
from messaging.services import contact_upsert

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "12"))

pytestmark = pytest.mark.django_db(transaction=True)


# The run itself is bounded (timeout=600 below); the suite-wide 300 s would cut it short on a
# busy machine now that the API has more endpoints.
@pytest.mark.timeout(660)
def test_api_survives_schemathesis(live_server, simulator, tmp_path):
    install_blueprints(activate=True)
    contact_upsert(
        external_id="fuzz-1", data={"email": "fuzz@example.com", "phone": "+14155552671"}
    )
    _, key = ApiKey.objects.create_key(name="fuzz", scopes=list(ALL_SCOPES))
    old_rates = ApiKeyRateThrottle.THROTTLE_RATES
    ApiKeyRateThrottle.THROTTLE_RATES = {"api_key": "100000/min"}  # fuzzing is not abuse
    hostile_log = tmp_path / "hostile.log"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_hooks",
        "FUZZ_HOSTILE_LOG": str(hostile_log),
    }
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                str(ROOT / "openapi.yaml"),
                "--url",
                live_server.url,
                "--header",
                f"Authorization: Api-Key {key}",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                "20261123",
                "--workers",
                "1",
                "--request-timeout",
                "20",
                "--suppress-health-check",
                "all",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
            env=env,
        )
    finally:
        ApiKeyRateThrottle.THROTTLE_RATES = old_rates
    summary = result.stdout[-20000:]
    assert result.returncode == 0, (
        f"schemathesis found problems:\n{summary}\n{result.stderr[-2000:]}"
    )
    # The hooks did send hostile input (a run without them would prove nothing).
    sent = set(hostile_log.read_text().split()) if hostile_log.exists() else set()
    kinds = ("body:nul", "body:surrogate", "body:nul_key", "body:deep", "body:not_finite")
    for kind in (*kinds, "query:nul"):
        assert kind in sent, f"no {kind} case was generated: {sorted(sent)}"
