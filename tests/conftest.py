"""Shared fixtures: real PostgreSQL, Redis and a Kafka-protocol broker (Tansu) for the session.

PostgreSQL and Redis: the machine's services on 127.0.0.1 when they answer (CI), else the
embedded ones. Each test run gets its own database and each test its own topic/key prefix.
In CI (CI=true) nothing is skipped for want of a service: a missing one is an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support import Proc, Rig, local_settings

from benchmarks._services import new_database, pg_answers
from storage.db import make_engine, make_sessionmaker, plain_url
from streams.settings import Settings
from streams.stack.services import ChildService, redis_answers, start_redis, start_tansu
from streams.topics import Names

if TYPE_CHECKING:
    from system.dropzone import Site

ROOT = Path(__file__).resolve().parent.parent

# --- issue 17: renders get a generated intro and watermark unless told otherwise; the suite's
# renders (and the children it starts, whose environment is built from Settings) stay unbranded
# so their durations and pixels are the footage's. tests/agents/test_default_branding.py passes
# branding_intro=None / branding_logo=None to get the defaults.
os.environ.setdefault("SKYREEL_BRANDING_INTRO", "false")
os.environ.setdefault("SKYREEL_BRANDING_LOGO", "false")
# --- end of issue 17 ---
PG_HOST_URL = os.environ.get("SKYREEL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    # Not under pytest's tmp root: another pytest session resets that to 0700, which would lock
    # the unprivileged user that embedded PostgreSQL runs as (when we are root) out mid-run.
    path = Path(tempfile.mkdtemp(prefix="skyreel-services-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def embedded_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir for embedded services that their system user can reach for the whole test.
    As root, pytest resets its tmp root to 0700 whenever another pytest session starts, which
    locks the unprivileged `embedded_postgres` user out mid-test; so as root use a directory of
    our own under /tmp."""
    if os.geteuid() != 0:
        yield tmp_path / "data"
        return
    path = Path(tempfile.mkdtemp(prefix="skyreel-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin_url(services_dir: Path) -> Iterator[str]:
    if pg_answers(PG_HOST_URL):
        yield PG_HOST_URL
        return
    if os.environ.get("CI"):
        raise RuntimeError(f"PostgreSQL does not answer at {PG_HOST_URL} (CI needs it)")
    from streams.stack.postgres import start_postgres

    svc = start_postgres(services_dir)
    try:
        yield svc.extra["url"]
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database for this test run, migrated with Alembic; dropped afterwards."""
    with new_database(pg_admin_url, f"skyreel_t_{uuid.uuid4().hex[:10]}") as url:
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


TABLES = (
    "pipeline_step_log, pipeline_step_attempt, pipeline_step, pipeline_execution, qr_scan, "
    "jump_session, imported_file, card, detector, dead_letter, counter, worker_heartbeat, "
    "operator_command, session_edit, passenger_link, purge_record, delivery"
)


@pytest.fixture
async def clean_db(engine: AsyncEngine) -> AsyncEngine:
    """Every table empty before the test."""
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A raw asyncpg connection for assertions."""
    conn = await asyncpg.connect(plain_url(database_url))
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def redis_url(services_dir: Path) -> Iterator[str]:
    if redis_answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    if os.environ.get("CI"):
        raise RuntimeError("Redis does not answer at 127.0.0.1:6379 (CI needs it)")
    svc = start_redis(services_dir)
    try:
        yield f"redis://{svc.address}/0"
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def broker_service(services_dir: Path) -> Iterator[ChildService]:
    svc = start_tansu(services_dir)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[list[ChildService]]:
    """A Tansu of this test only (a list: a test that kills it puts the new one in its place)."""
    (tmp_path / "tansu").mkdir()
    held = [start_tansu(tmp_path / "tansu")]
    try:
        yield held
    finally:
        for svc in held:
            svc.stop()


@pytest.fixture(scope="session")
def broker(broker_service: ChildService) -> str:
    """Bootstrap address of the session's Tansu broker."""
    return broker_service.address


@pytest.fixture
def names() -> Names:
    """Topic/group/key names unique to this test (one broker serves the whole session)."""
    return Names(prefix=f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, redis_url: str, broker: str, names: Names
) -> Settings:
    return local_settings(
        tmp_path,
        database_url,
        redis_url,
        broker,
        names.prefix,
        app_id=f"{names.prefix}-app",
        hub_port=0,
    )


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start `python -m <module> args...` as a child; every child is stopped at teardown."""
    procs: list[Proc] = []

    def start(module: str, *args: str, env: dict[str, str] | None = None, name: str = "") -> Proc:
        log = tmp_path / f"{name or module.replace('.', '_')}-{len(procs)}.log"
        cmd = [sys.executable, "-m", module, *args]
        with log.open("wb") as fh:
            popen = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
            )
        proc = Proc(cmd, popen, log, env or {})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop(timeout=10)


@pytest.fixture
def rig(clean_db: AsyncEngine, settings: Settings, names: Names, spawn: Callable[..., Proc]) -> Rig:
    """An engine test's database (emptied), settings, topic names and children."""
    return Rig(clean_db, settings, names, spawn)


@pytest.fixture
def site(
    sessions: async_sessionmaker[AsyncSession],
    clean_db: AsyncEngine,
    spawn: Callable[..., Proc],
    tmp_path: Path,
) -> Site:
    """A whole-system test's dropzone (tests/system/dropzone.py), on an empty database."""
    from system.dropzone import Site

    return Site(spawn, sessions, tmp_path / "cards")
