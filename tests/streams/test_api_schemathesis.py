"""Property-based test of the status API: schemathesis reads the schema the hub serves and
generates requests (valid and invalid) for every operation; no 5xx and no response that
violates the schema may come back.

The hub runs under uvicorn in a thread of its own (schemathesis calls are synchronous), on a
seeded database (warnings, review reasons, cards in every removal state), with the admin token
sent so the actions get past authentication.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from command_harness import commands_in_thread
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text
from status_harness import AUTH, api_settings, seed, seed_trouble
from support import local_settings

from storage.db import make_engine
from streams.hub.openapi import openapi_document
from streams.hub.server import create_app
from streams.topics import Names

TABLES = (
    "pipeline_step_log, pipeline_step_attempt, pipeline_step, pipeline_execution, qr_scan, "
    "jump_session, imported_file, card, detector, dead_letter, counter"
)


async def _reset_and_seed(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        await seed(engine)
        await seed_trouble(engine)  # warnings, review reasons and card trouble in the bodies
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def hub_url(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_url: str, broker: str
) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("schemathesis")
    names = Names(prefix=f"st{int(time.time() * 1000) % 10**8}")
    settings = api_settings(local_settings(root, database_url, redis_url, broker, names.prefix))
    asyncio.run(_reset_and_seed(database_url))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), lifespan="on", log_config=None, timeout_graceful_shutdown=3
        )
    )
    # the engine's command applier, so the actions get the engine's answers (not 202)
    applier = commands_in_thread(settings)
    applier.__enter__()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "hub did not start"
        time.sleep(0.05)
    assert httpx.get(f"{url}/api/openapi.json").status_code == 200
    yield url
    server.should_exit = True
    thread.join(20)
    applier.__exit__(None, None, None)
    sock.close()


SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}


# Negative data (wrong types, out-of-range values) only where there is input to get wrong.
CASES = [
    (label, mode)
    for label, op in sorted(OPERATIONS.items())
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or list(op.iter_parameters()) or op.body
]


# schemathesis' negative generators use `random` inside strategies (its issue, not ours).
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.parametrize(("label", "mode"), CASES)
def test_api_answers_generated_requests_within_its_schema(
    hub_url: str, label: str, mode: GenerationMode
) -> None:
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @hsettings(
        max_examples=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        # Positive and negative data alike: no 5xx, and every answer matches its schema.
        response = case.call(base_url=hub_url, headers=dict(AUTH), timeout=20)
        assert response.status_code < 500, (case.path, case.query, response.text)
        case.validate_response(
            response,
            checks=[
                not_a_server_error,
                response_schema_conformance,
                status_code_conformance,
                content_type_conformance,
            ],
        )

    run()
