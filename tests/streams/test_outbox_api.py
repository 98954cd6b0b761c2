"""`GET /api/outbox`: its `limit` is validated like every other list's (a clear 422, never a
silent clamp), and a good one is honoured."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import TOKEN, api_settings, serve_hub

from streams.settings import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("abc", "limit must be an integer between 1 and 200"),
        ("-3", "limit must be an integer between 1 and 200"),
        ("0", "limit must be between 1 and 200"),
        ("201", "limit must be between 1 and 200"),
    ],
)
async def test_a_bad_limit_is_refused_with_the_range(
    settings: Settings, clean_db: AsyncEngine, limit: str, message: str
) -> None:
    async with (
        serve_hub(api_settings(settings)) as hub,
        httpx.AsyncClient(base_url=hub.url, timeout=20) as c,
    ):
        answer = await c.get("/api/outbox", params={"limit": limit}, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json() == {"error": {"code": "invalid", "message": message}}


async def test_a_good_limit_lists_the_outbox(settings: Settings, clean_db: AsyncEngine) -> None:
    async with (
        serve_hub(api_settings(settings)) as hub,
        httpx.AsyncClient(base_url=hub.url, timeout=20) as c,
    ):
        answer = await c.get("/api/outbox", params={"limit": "5"}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"smtp", "outbox_sent", "deliveries"}
