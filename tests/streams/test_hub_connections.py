"""Hostile connections on the real hub (issue 14): idle floods, slow-loris, silent sockets and
failed-handshake bursts are bounded and refused, logged once, while a good station and REST keep
working. Attackers connect from other loopback source addresses (127.0.0.2 and up: Linux routes
all of 127.0.0.0/8 to lo), so the limits per peer do not hit the station on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from hub_case import HubCase, hub_case
from hub_harness import (
    close_code,
    detector_socket,
    file_list,
    hub_log_lines,
    hub_settings,
    new_detector,
    open_detector,
    running_hub,
    topic_values,
)
from support import wait_for
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake

from detector import protocol
from streams.hub.guard import (
    ACCEPT_OUT_OF_RESOURCES,
    FD_HEADROOM,
    ConnectionLimits,
    fit_to_fd_limit,
)
from streams.settings import Settings

__all__ = ["hub_case", "hub_settings"]

GUARD_LOGGER = "streams.hub.guard"
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _limited(case: HubCase, **limits: object) -> Settings:
    return case.settings.model_copy(update=limits)


async def _raw(settings: Settings, source: str) -> Stream:
    """A plain TCP connection to the hub from ``source`` (a loopback address)."""
    return await asyncio.open_connection(
        settings.hub_host, settings.hub_port, local_addr=(source, 0)
    )


@contextlib.asynccontextmanager
async def _flood(settings: Settings, sources: list[str]) -> AsyncIterator[list[Stream]]:
    """One idle connection per entry of ``sources``, all closed afterwards."""
    streams: list[Stream] = []
    try:
        for source in sources:
            streams.append(await _raw(settings, source))
        yield streams
    finally:
        for _reader, writer in streams:
            writer.close()
        for _reader, writer in streams:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _answer(reader: asyncio.StreamReader, wait_s: float = 3.0) -> bytes | None:
    """All the hub sent before it closed the connection; None if it is still open."""
    try:
        return await asyncio.wait_for(reader.read(), wait_s)
    except TimeoutError:
        return None


def _closed(streams: list[Stream]) -> int:
    """Connections the hub closed without sending anything."""
    return sum(reader.at_eof() for reader, _writer in streams)


async def _connections(hub_http: str) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{hub_http}/api/health", timeout=10)).json()
    counters = body["connections"]
    assert isinstance(counters, dict)
    return counters


def _guard_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == GUARD_LOGGER]


async def _station_works(case: HubCase, ws: ClientConnection, card_id: str) -> None:
    """The well-behaved station's list reaches the detector-events topic."""
    await ws.send(file_list(card_id))

    async def listed() -> bool:
        events = await topic_values(case.settings.kafka_url, case.names.detector_events)
        return any(e["card_id"] == card_id for e in events)

    await wait_for(listed, what=f"the station's {card_id} list on the topic")


async def _rest_answers(hub_http: str) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{hub_http}/api/health", timeout=10)).status_code == 200
        assert (await client.get(f"{hub_http}/api/executions", timeout=10)).status_code == 200


# red-team D4: ~20,000 idle TCP connections used up the descriptors and REST stopped answering
async def test_an_idle_flood_is_held_to_the_limit_and_rest_and_a_station_keep_working(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub")
    settings = _limited(
        hub_case,
        hub_max_connections=64,
        hub_max_connections_per_peer=40,
        hub_header_timeout_s=120.0,  # the limit, not the timeout, must do it here
    )
    token = await new_detector(hub_case.sessions, "station-a")
    sources = [f"127.0.0.{2 + i % 10}" for i in range(300)]  # 30 per address: under 40
    async with running_hub(settings) as hub, open_detector(hub.ws, token) as station:
        async with _flood(settings, sources) as flood:

            async def all_accepted() -> bool:
                return (await _connections(hub.http))["evicted_idle"] >= len(flood) - 64

            await wait_for(all_accepted, what="the hub to take in the whole flood")
            await wait_for(lambda: _closed(flood) >= len(flood) - 64, what="flood closed")
            counters = await _connections(hub.http)
            assert counters["open"] <= 64 and counters["limit"] == 64
            # The oldest idle ones made room: the newest are still open, the first are gone.
            assert flood[0][0].at_eof() and not flood[-1][0].at_eof()
            await _rest_answers(hub.http)
            await _station_works(hub_case, station, "CARD-A")
            lines = _guard_lines(caplog)
            assert len(lines) == 1 and "connection limit reached" in lines[0], lines
        await wait_for(
            lambda: any("below the limit again" in line for line in _guard_lines(caplog)),
            what="the all-clear line",
        )
    lines = _guard_lines(caplog)
    assert len(lines) == 2, lines  # reached, clear again: not one line per connection
    assert "closed" in lines[1] and "idle connection(s) to make room" in lines[1]


# red-team D4: one address holding hundreds of sockets is refused beyond its own limit
async def test_one_peer_is_refused_beyond_its_limit_with_a_503_and_others_are_not(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub")
    settings = _limited(hub_case, hub_max_connections=500, hub_max_connections_per_peer=20)
    token = await new_detector(hub_case.sessions, "station-a")
    async with running_hub(settings) as hub, open_detector(hub.ws, token) as station:
        async with _flood(settings, ["127.0.0.2"] * 100) as flood:
            answers = await asyncio.gather(*(_answer(reader) for reader, _w in flood))
            refusals = [a for a in answers if a is not None]
            assert len(refusals) == 80
            assert all(r.startswith(b"HTTP/1.1 503 ") and b"retry" in r for r in refusals)
            assert (await _connections(hub.http))["refused"] == 80
            await _rest_answers(hub.http)
            await _station_works(hub_case, station, "CARD-A")
        await wait_for(
            lambda: len(_guard_lines(caplog)) == 2, what="the peer's all-clear line", timeout=10
        )
    reached, clear = _guard_lines(caplog)
    assert "peer 127.0.0.2 reached its connection limit (20 open)" in reached
    assert "peer 127.0.0.2 below its connection limit again" in clear and "refused 80" in clear


# red-team D4: 500 slow-loris clients were never closed
async def test_slow_loris_clients_are_closed_after_the_header_timeout(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub")
    settings = _limited(hub_case, hub_header_timeout_s=1.0)
    token = await new_detector(hub_case.sessions, "station-a")
    request = b"GET /api/health HTTP/1.1\r\nHost: hub\r\n" + b"X-Slow: a\r\n" * 100 + b"\r\n"

    async def slow_loris(source: str) -> int:
        """Bytes sent, one every 50 ms, before the hub closed the connection."""
        reader, writer = await _raw(settings, source)
        sent = 0
        try:
            for byte in request:
                if reader.at_eof():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass
        finally:
            writer.close()
        return sent

    async with running_hub(settings) as hub, open_detector(hub.ws, token) as station:
        sent = await asyncio.wait_for(
            asyncio.gather(*(slow_loris(f"127.0.0.{2 + i % 5}") for i in range(30))), 60
        )
        # Cut off after about 1 s (~20 bytes), never reaching the end of the headers.
        assert all(n < len(request) // 2 for n in sent), sent
        assert (await _connections(hub.http))["timed_out"] >= 30
        # The station connected before them is still there well past the header timeout.
        await _station_works(hub_case, station, "CARD-A")
        await _rest_answers(hub.http)
    timed_out = [line for line in _guard_lines(caplog) if "request headers in time" in line]
    assert len(timed_out) == 1, _guard_lines(caplog)  # one summary, not thirty lines


# red-team D4: 1,000 idle sockets (not a byte sent) were never closed; nor idle keep-alives
async def test_silent_and_idle_keep_alive_connections_are_closed_after_the_timeout(
    hub_case: HubCase,
) -> None:
    settings = _limited(hub_case, hub_header_timeout_s=1.0, hub_keepalive_timeout_s=120)
    token = await new_detector(hub_case.sessions, "station-a")
    async with running_hub(settings) as hub, open_detector(hub.ws, token) as station:
        async with _flood(settings, [f"127.0.0.{2 + i % 5}" for i in range(50)]) as silent:
            await wait_for(lambda: _closed(silent) == len(silent), what="silent sockets closed")
            assert all([await r.read() == b"" for r, _w in silent])  # closed, no response
        # After a complete request and its response, the next request's headers are due
        # within the header timeout too (the keep-alive timeout here is far longer).
        reader, writer = await _raw(settings, "127.0.0.2")
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: hub\r\n\r\n")
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert response.startswith(b"HTTP/1.1 200 ")
        body = await _answer(reader, 10)  # the rest of the response, then the close
        assert body is not None and body.startswith(b"{"), body
        writer.close()
        await _station_works(hub_case, station, "CARD-A")


# red-team: 300 failed handshakes in 3.5 s, no limit
async def test_failed_handshakes_from_one_address_are_throttled_and_logged_once(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub")
    settings = _limited(hub_case, hub_auth_failures_per_peer=5, hub_auth_failure_window_s=60.0)
    good_token = await new_detector(hub_case.sessions, "station-a")
    other_token = await new_detector(hub_case.sessions, "station-b")
    spare_token = await new_detector(hub_case.sessions, "station-z")

    async def handshake(token: str, source: str) -> tuple[int | None, str]:
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(
            hub.ws, additional_headers=headers, open_timeout=10, local_addr=(source, 0)
        ) as ws:
            code, _frames = await close_code(ws)
            assert ws.close_reason is not None
            return code, ws.close_reason

    async with running_hub(settings) as hub, open_detector(hub.ws, good_token) as station:
        results = [await handshake(f"guess-{i}", "127.0.0.2") for i in range(40)]
        assert {code for code, _ in results} == {protocol.CLOSE_POLICY}
        reasons = [reason for _, reason in results]
        assert reasons[:5] == ["unknown or revoked token"] * 5
        assert all(
            r.startswith("too many failed authentication attempts from this address; wait ")
            for r in reasons[5:]
        ), reasons
        # Blocked means no token check at all: even a valid token from that address is refused.
        code, reason = await handshake(spare_token, "127.0.0.2")
        assert code == protocol.CLOSE_POLICY and reason.startswith("too many failed")
        # Another address, and the station already connected, are unaffected.
        async with detector_socket(hub.ws, other_token) as again:
            welcome = protocol.parse_hub_message(await asyncio.wait_for(again.recv(), 10))
            assert isinstance(welcome, protocol.Welcome)
        await _station_works(hub_case, station, "CARD-A")
    hub_lines = hub_log_lines(caplog.records)
    throttled = [line for line in hub_lines if line.startswith("throttling detector handshakes")]
    assert len(throttled) == 1 and "from 127.0.0.2: 5 failed" in throttled[0], hub_lines
    refused = [line for line in hub_lines if line.startswith("refused detector connection")]
    assert len(refused) == 5, refused  # the 36 throttled attempts add no line each


def test_a_per_peer_limit_above_the_overall_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=r"MAX_CONNECTIONS_PER_PEER \(32\) cannot exceed"):
        Settings(hub_max_connections=16, hub_max_connections_per_peer=32)


def test_the_overall_limit_is_fitted_below_the_open_file_limit() -> None:
    limits = ConnectionLimits(max_total=4096, max_per_peer=128, header_timeout_s=10)
    assert fit_to_fd_limit(limits, 1_048_576) == limits
    fitted = fit_to_fd_limit(limits, 1024)
    assert fitted.max_total == 1024 - FD_HEADROOM and fitted.max_per_peer == 128


# red-team D4: 177k log lines in 30 s: accept() failing for want of descriptors, once a line each
async def test_accept_failures_are_logged_once_until_accepting_works_again(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub")
    token = await new_detector(hub_case.sessions, "station-a")
    async with running_hub(hub_case.settings) as hub, open_detector(hub.ws, token) as station:
        # What asyncio's accept loop reports on EMFILE, through the loop the hub runs in.
        loop = asyncio.get_running_loop()
        emfile = OSError(errno.EMFILE, "Too many open files")
        for _ in range(1000):
            loop.call_exception_handler({"message": ACCEPT_OUT_OF_RESOURCES, "exception": emfile})
        await _rest_answers(hub.http)  # a connection accepted: the failure is over
        await _station_works(hub_case, station, "CARD-A")
    failing, again = _guard_lines(caplog)
    assert failing.startswith("cannot accept connections: [Errno 24] Too many open files")
    assert again == "accepting connections again (1000 accept attempts failed meanwhile)"


# red-team D4: a WebSocket handshake must be authenticated within seconds, not hang for ever
async def test_a_handshake_that_cannot_finish_is_closed_after_the_timeout(
    hub_case: HubCase, pg: asyncpg.Connection
) -> None:
    settings = _limited(hub_case, hub_header_timeout_s=1.0)
    token = await new_detector(hub_case.sessions, "station-a")
    async with running_hub(settings) as hub:
        async with pg.transaction():
            # The token lookup waits on this lock, so the handshake cannot finish in time.
            await pg.execute("LOCK TABLE detector IN ACCESS EXCLUSIVE MODE")
            headers = {"Authorization": f"Bearer {token}"}
            # Closed by the hub: InvalidMessage, not the client's own 30 s TimeoutError.
            with pytest.raises(InvalidHandshake, match="did not receive a valid HTTP response"):
                async with connect(hub.ws, additional_headers=headers, open_timeout=30):
                    pass
        assert (await _connections(hub.http))["timed_out"] >= 1
        # Once the database answers again the same station connects and works.
        async with open_detector(hub.ws, token) as station:
            await _station_works(hub_case, station, "CARD-A")
