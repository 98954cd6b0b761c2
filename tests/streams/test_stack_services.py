"""The Stack against real services: all three embedded when nothing is configured, none of
them when URLs are; migrations applied, topics created with the configured partition count,
and nothing of ours left running afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from benchmarks._services import new_database
from storage.db import plain_url
from streams.settings import Settings
from streams.stack.local import Stack
from streams.stack.services import ServiceStartError, free_port
from streams.topics import Names


def pin_ports(data_dir: Path) -> None:
    """Free ports for the embedded services, so parallel runs never race for the defaults."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("postgres", "redis", "kafka"):
        (data_dir / f"{name}.port").write_text(f"{free_port()}\n")


def table_exists(url: str, table: str) -> bool:
    async def run() -> bool:
        conn = await asyncpg.connect(plain_url(url), timeout=10)
        try:
            return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))
        finally:
            await conn.close()

    return asyncio.run(run())


def partitions(bootstrap: str, topics: tuple[str, ...]) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            metas = await admin.describe_topics(list(topics))
        finally:
            await admin.close()
        return {m["topic"]: len(m["partitions"]) for m in metas if m["error_code"] == 0}

    return asyncio.run(run())


@pytest.fixture
def data_dir(embedded_data_dir: Path) -> Path:
    return embedded_data_dir


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_embedded_stack_starts_all_three_and_leaves_nothing_behind(data_dir: Path) -> None:
    pin_ports(data_dir)
    settings = Settings(data_dir=data_dir, topic_partitions=3)
    stack = Stack(settings)
    with stack as eff:
        assert sorted(stack.embedded) == ["kafka", "postgresql", "redis"]
        assert eff.database_url and eff.redis_url and eff.kafka_url
        assert eff.uses_local_kafka_tuning, "children must keep the local broker tuning"
        assert table_exists(eff.database_url, "imported_file")
        assert redis.Redis.from_url(eff.redis_url).ping()
        names = Names(eff.topic_prefix).source_topics()
        assert partitions(eff.kafka_url, names) == dict.fromkeys(names, 3)
        assert eff.share_root == data_dir.resolve() / "share" and eff.share_root.is_dir()
        pids = [svc.process.pid for svc in stack.services.values()]
        ours = [p.pid for pid in pids for p in psutil.Process(pid).children(recursive=True)]
    assert not stack.services
    left = [p for p in pids + ours if alive(p)]
    assert not left, f"processes left running: {left}"
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    # Same data dir again: same URLs (remembered ports), data kept, topics recreated.
    with Stack(settings) as again:
        assert (again.database_url, again.redis_url, again.kafka_url) == (
            eff.database_url,
            eff.redis_url,
            eff.kafka_url,
        )
        assert table_exists(again.database_url, "imported_file")
        assert partitions(again.kafka_url, names) == dict.fromkeys(names, 3)


@pytest.fixture
def scratch_db(pg_admin_url: str) -> Iterator[str]:
    name = f"skyreel_stack_{uuid.uuid4().hex[:8]}"
    with new_database(pg_admin_url, name, migrate=False) as url:
        yield url


@pytest.mark.slow
def test_configured_urls_start_nothing(
    tmp_path: Path, scratch_db: str, redis_url: str, broker: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=scratch_db,
        redis_url=redis_url,
        kafka_url=broker,
        topic_prefix=prefix,
        topic_partitions=2,
    )
    stack = Stack(settings)
    with stack as eff:
        assert stack.embedded == []
        assert (eff.database_url, eff.redis_url, eff.kafka_url) == (scratch_db, redis_url, broker)
        assert not eff.uses_local_kafka_tuning, "an external broker keeps production timings"
        assert table_exists(scratch_db, "pipeline_step")
        names = Names(prefix).source_topics()
        assert partitions(broker, names) == dict.fromkeys(names, 2)
    assert not (tmp_path / "data" / "postgres").exists()


def test_an_unreachable_external_redis_is_a_clear_error(tmp_path: Path, scratch_db: str) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=scratch_db,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        kafka_url="127.0.0.1:1",
    )
    with pytest.raises(ServiceStartError, match="redis"):
        Stack(settings).start()


def test_a_second_run_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    first = Stack(Settings(data_dir=data_dir))
    first._take_lock(data_dir)
    try:
        second = Stack(Settings(data_dir=data_dir))
        with pytest.raises(ServiceStartError, match="another skyreel run"):
            second.start()
        assert not second.services
        assert not (data_dir / "postgres").exists(), "nothing started before the lock"
    finally:
        first.stop()
    # Released with the holder: the next run may go.
    third = Stack(Settings(data_dir=data_dir))
    third._take_lock(data_dir)
    third.stop()
