"""The role tests' world: staff of each role, a customer, a test contact, journeys, …"""

from __future__ import annotations

import pytest

from .world import World, build_world


@pytest.fixture
def world(db, simulator, django_capture_on_commit_callbacks) -> World:
    return build_world(simulator, django_capture_on_commit_callbacks)
