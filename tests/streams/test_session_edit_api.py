"""`GET /api/sessions/{key}`'s `edit` against a real hub (uvicorn) and PostgreSQL: the `phases`
step's marks, EDL (spans named by clip), timeline and clips; null without a phases step; a
malformed stored output answered as an `edit` with an error (200, never a 500); and the pure
validation (`session_edit`) on outputs of every shape. Bodies are checked against the schema
the hub serves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from edit_harness import CHAPTER_AT, MARKS, RECORDING_S, SESSION, seed_edit, spans, timeline
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import Served, api_settings, check, seed, serve_hub

from streams.hub.api_edit_models import MAX_POINTS, session_edit
from streams.settings import Settings


@pytest.fixture
async def client(settings: Settings, clean_db: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    served: Served
    async with (
        serve_hub(api_settings(settings)) as served,
        httpx.AsyncClient(base_url=served.url, timeout=20) as c,
    ):
        yield c


async def detail(client: httpx.AsyncClient) -> dict:  # type: ignore[type-arg]
    r = await client.get(f"/api/sessions/{SESSION}")
    assert r.status_code == 200, r.text
    body = r.json()
    doc = (await client.get("/api/openapi.json")).json()
    check(doc, "SessionDetail", body)
    return body  # type: ignore[no-any-return]


async def test_the_edit_of_a_session_with_its_timeline(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed(clean_db)
    e = await seed_edit(clean_db)
    edit = (await detail(client))["edit"]
    assert edit["step"] == "phases" and edit["status"] == "succeeded" and edit["error"] is None
    assert edit["needs_review"] is True
    assert edit["reasons"] == ["the landing mark is not sure (0.66 < 0.70)"]
    assert edit["marks"] == MARKS
    assert edit["sources"] == {"telemetry": True, "sound": True}
    assert edit["notes"] == ["GX020002.MP4: no telemetry track"]
    assert edit["recording_s"] == RECORDING_S
    assert [(c["name"], c["start_s"]) for c in edit["clips"]] == [
        ("GX010002.MP4", 0.0),
        ("GX020002.MP4", CHAPTER_AT),
    ]
    got = edit["edl"]["spans"]
    assert [(s["file_id"], s["name"], s["role"]) for s in got] == [
        (e.first, "GX010002.MP4", "plane"),
        (e.first, "GX010002.MP4", "freefall"),
        (e.first, "GX010002.MP4", "canopy"),
        (e.second, "GX020002.MP4", "canopy"),
        (e.second, "GX020002.MP4", "landing"),
    ]
    assert [s["output_s"] for s in got] == [10.2, 50.3, 17.375, 24.0, 10.0]
    assert edit["edl"]["total_s"] == pytest.approx(sum(s["output_s"] for s in got))
    tl = timeline()
    assert edit["timeline"] == tl
    assert edit["timeline"]["sound_db"].count(None) == tl["sound_db"].count(None) > 0


async def test_an_older_output_without_timeline_names_spans_from_the_session_files(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed(clean_db)
    e = await seed_edit(clean_db, with_timeline=False)
    edit = (await detail(client))["edit"]
    assert edit["error"] is None and edit["timeline"] is None and edit["recording_s"] is None
    assert edit["clips"] == []
    assert {(s["file_id"], s["name"]) for s in edit["edl"]["spans"]} == {
        (e.first, "GX010002.MP4"),
        (e.second, "GX020002.MP4"),
    }


async def test_no_phases_step_no_edit(client: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    await seed(clean_db)  # a jump execution with probes and a render, no phases step
    body = await detail(client)
    assert body["edit"] is None
    assert [f["name"] for f in body["footage"]] == ["GX010002.MP4"]


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        ({"needs_review": False, "edl": {"total_s": 1, "spans": "all"}}, "edl.spans is not a list"),
        (["not", "an", "object"], "the output is not an object"),
        ({"edl": None}, "no needs_review"),
        ({"needs_review": True, "marks": {"exit": {"t": "soon"}}}, "marks.exit"),
        (
            {"needs_review": True, "timeline": {"t": [0, 1, 2], "altitude_m": [1, 2]}},
            "timeline.altitude_m has 2 points, timeline.t 3",
        ),
        (
            {"needs_review": True, "edl": {"total_s": 1, "spans": [{"file_id": 1, "start": 0}]}},
            "edl.spans[0].end is not a number",
        ),
        ("a bare string", "not JSON"),
    ],
)
async def test_a_malformed_output_is_an_edit_with_an_error_not_a_500(
    client: httpx.AsyncClient, clean_db: AsyncEngine, stored: object, says: str
) -> None:
    await seed(clean_db)
    await seed_edit(clean_db, stored=stored)
    edit = (await detail(client))["edit"]
    assert edit["status"] == "succeeded"
    assert edit["error"].startswith("the stored output of the phases step could not be read: ")
    assert says in edit["error"]
    assert edit["edl"] is None and edit["timeline"] is None


async def test_a_phases_step_not_run_or_failed(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed(clean_db)
    await seed_edit(clean_db, stored=..., status="failed", error="no clip could be read")
    edit = (await detail(client))["edit"]
    assert (edit["status"], edit["error"], edit["marks"]) == (
        "failed",
        "no clip could be read",
        {"exit": None, "opening": None, "landing": None},
    )


# --- the validation, pure ------------------------------------------------------------------------


def test_a_long_timeline_is_thinned_and_unknown_marks_ignored() -> None:
    n = 5000
    out = {
        "needs_review": False,
        "marks": {"exit": None, "opening": None, "landing": None, "wobble": {"t": 1}},
        "timeline": {"t": [float(i) for i in range(n)], "accel_g": [1.0] * n},
        "edl": None,
    }
    edit = session_edit({"name": "phases", "status": "succeeded", "output": out})
    assert edit is not None and edit.error is None and edit.timeline is not None
    assert len(edit.timeline.t) <= MAX_POINTS and edit.timeline.t[0] == 0.0
    assert edit.timeline.altitude_m == [None] * len(edit.timeline.t)


def test_spans_of_clips_not_in_the_session_have_no_name_and_a_zero_speed_is_an_error() -> None:
    out = {"needs_review": False, "edl": {"total_s": 5, "spans": spans(7, 8)}}
    edit = session_edit({"name": "phases", "status": "succeeded", "output": out}, {7: "A.MP4"})
    assert edit is not None and edit.edl is not None
    assert [s.name for s in edit.edl.spans] == ["A.MP4"] * 3 + [None] * 2
    bad = {"needs_review": False, "edl": {"total_s": 5, "spans": [{**spans(7, 8)[0], "speed": 0}]}}
    edit = session_edit({"name": "phases", "status": "succeeded", "output": bad})
    assert edit is not None and edit.error is not None and "speed is not positive" in edit.error
    assert session_edit(None) is None
