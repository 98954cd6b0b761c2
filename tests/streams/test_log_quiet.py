"""A broker outage is a few log lines, not one per client retry (streams/stack/log_quiet.py)."""

from __future__ import annotations

import logging

import pytest

from streams.stack.log_quiet import RepeatFilter, quiet_repeats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, ("node", 111), None)


def test_repeats_of_the_client_are_held_back_and_counted() -> None:
    clock = Clock()
    f = RepeatFilter(window_s=30, clock=clock)
    template = "Unable connect to node with id %s: %s"
    assert f.filter(record("aiokafka", template))
    assert not any(f.filter(record("aiokafka", template)) for _ in range(50))
    clock.now += 31
    again = record("aiokafka", template)
    assert f.filter(again)
    assert again.getMessage().endswith("(and 50 more like it in the last 30 s)")
    # another kind of message passes at once
    assert f.filter(record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s"))


def test_our_own_lines_and_info_pass_untouched() -> None:
    f = RepeatFilter(window_s=30, clock=Clock())
    ours = "transient error on %s: %s"
    assert all(f.filter(record("agents.guard", ours)) for _ in range(5))
    assert all(f.filter(record("aiokafka", "joined %s", logging.INFO)) for _ in range(5))


def test_installed_on_the_client_loggers(caplog: pytest.LogCaptureFixture) -> None:
    installed = quiet_repeats()
    log = logging.getLogger("aiokafka")
    try:
        with caplog.at_level(logging.ERROR, logger="aiokafka"):
            for _ in range(20):
                log.error("Unable connect to node with id %s: %s", 111, "refused")
        assert len([r for r in caplog.records if r.name == "aiokafka"]) == 1
    finally:
        for name in list(logging.root.manager.loggerDict):
            logging.getLogger(name).removeFilter(installed)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(installed)
