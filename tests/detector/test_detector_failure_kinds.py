"""The optional failure kind of a copy_result: carried, omitted when unset, coded in reasons."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector import protocol
from detector.protocol import (
    FAILURE_KINDS,
    CopyResult,
    ErrorMessage,
    coded_reason,
    parse_detector_message,
    split_reason,
)


@given(st.sampled_from(sorted(FAILURE_KINDS)), st.text(max_size=200))
def test_a_coded_reason_splits_back(kind: str, reason: str) -> None:
    assert split_reason(coded_reason(kind, reason)) == (kind, reason)


@given(st.text(max_size=200))
def test_reasons_without_a_kind_stay_as_they_are(reason: str) -> None:
    assert coded_reason(None, reason) == reason
    kind, text = split_reason(reason)
    assert text == reason
    assert kind in (None, "no_space")


def test_an_older_detectors_full_share_is_still_no_space() -> None:
    assert split_reason("destination full (ENOSPC) writing the share at byte 9") == (
        "no_space",
        "destination full (ENOSPC) writing the share at byte 9",
    )
    assert split_reason("[bogus] text") == (None, "[bogus] text")
    assert coded_reason("bogus", "x") == "x"


def test_failure_is_optional_and_left_out_when_unset() -> None:
    plain = CopyResult(type="copy_result", request_id="f1", status="failed", reason="r")
    assert "failure" not in json.loads(protocol.dump(plain))
    assert "request_id" not in json.loads(protocol.dump(ErrorMessage(code="x", message="y")))
    coded = plain.model_copy(update={"failure": "no_space"})
    again = parse_detector_message(protocol.dump(coded))
    assert isinstance(again, CopyResult) and again.failure == "no_space"
    older = parse_detector_message(json.dumps(json.loads(protocol.dump(plain))))
    assert isinstance(older, CopyResult) and older.failure is None


def test_an_unknown_failure_kind_is_refused() -> None:
    frame = {"v": 1, "type": "copy_result", "request_id": "f1", "status": "failed"}
    with pytest.raises(protocol.ProtocolError, match="failure"):
        parse_detector_message(json.dumps({**frame, "failure": "gremlins"}))
