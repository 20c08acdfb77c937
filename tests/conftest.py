"""Shared fixtures: a real Redis on its own database number, flushed around each test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

# arq's key prefixes are global, so tests keep to a database of their own.
TEST_REDIS_URL = os.environ.get("DESKBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - the Makefile starts one
        pytest.fail(f"no Redis at {TEST_REDIS_URL}: {exc} (run the tests through `make test`)")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()
