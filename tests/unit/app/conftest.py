"""Fixtures for the API unit tests: a FakeRuntime behind the real app, driven by TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from unit.app.api_helpers import KEYS, api_settings
from unit.app.fake_runtime import FakeRuntime

from app.api.main import create_app
from app.api.security import KeyStore


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def make_client(tmp_path: Path, runtime: FakeRuntime) -> Iterator[Callable[..., TestClient]]:
    """Build a client for an app with the given `api` settings (rate, size limit, CORS)."""
    clients: list[TestClient] = []

    def build(keys: KeyStore | None = None, **api: Any) -> TestClient:
        app: FastAPI = create_app(runtime, api_settings(tmp_path, **api), keys or KeyStore.from_keys(KEYS))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
