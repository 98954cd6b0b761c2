"""Step kinds of the real pipelines and the step definitions they are built from (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from agents.deliverables import Deliverable
from agents.pipeline.orchestrator import StepDef
from agents.pipeline.registry import StepKind

# timeout_s bounds one attempt; a RUNNING step older than that whose worker died is requeued by
# reconciliation, so these are kept tight (a probe or a QR decode takes about a second).
# A copy or a booking waits on the outside world (a card, a human): it never times out while
# waiting, and a failed copy is retried by itself when the file lands after all.
COPY = StepKind("copy", max_attempts=1, timeout_s=60)
PROBE = StepKind("probe", max_attempts=3, backoff_base_s=1, backoff_cap_s=30, timeout_s=30)
QR = StepKind("qr", max_attempts=2, backoff_base_s=1, backoff_cap_s=10, timeout_s=120)
GROUP = StepKind("group", max_attempts=5, backoff_base_s=1, backoff_cap_s=30, timeout_s=60)
BOOKING = StepKind("booking", max_attempts=1, timeout_s=60)
# reads every clip's telemetry track and decodes its audio: a few seconds per 15-minute clip
PHASES = StepKind("phases", max_attempts=2, backoff_base_s=1, backoff_cap_s=30, timeout_s=900)
RENDER = StepKind("render", runs_on="render_queue", max_attempts=2, timeout_s=4 * 3600)
PUBLISH = StepKind("publish", max_attempts=5, backoff_base_s=1, backoff_cap_s=60, timeout_s=600)
# photos (issue 16): decodes the jump's footage at a few frames a second, then ~30 stills at full
# resolution; a 4K jump of a few minutes takes minutes on a small machine
PHOTOS = StepKind("photos", max_attempts=2, backoff_base_s=5, backoff_cap_s=60, timeout_s=1800)

# deliver (issue 16, agents/jobs/deliver_step.py): emails the passenger link once; an SMTP
# server that is down or refusing for now is retried with a growing wait (30 s .. 10 min)
DELIVER = StepKind("deliver", max_attempts=8, backoff_base_s=30, backoff_cap_s=600, timeout_s=600)

ALL = (COPY, PROBE, QR, GROUP, BOOKING, PHASES, RENDER, PUBLISH, PHOTOS, DELIVER)


def copy_step(file_id: int, *, qr: bool, group: bool = False) -> StepDef:
    """Wait for a file's verified copy; then spawn its probe (and QR decode for candidates).

    ``group`` (a card import's QR candidate, issue 18): also a ``group:<file>`` step that starts
    the sessions closed once this clip is read."""
    # spawn patterns are prefixes ("probe:17*" also covers "probe:170"): harmless, since only
    # group patterns ("probe:*") are ever depended on
    spawns = (f"probe:{file_id}*", f"qr:{file_id}*") if qr else (f"probe:{file_id}*",)
    step_input: dict[str, object] = {"file_id": file_id, "qr": qr}
    if qr and group:
        spawns = (*spawns, f"group:{file_id}*")
        step_input["group"] = True
    return StepDef(f"copy:{file_id}", COPY.name, spawns=spawns, input=step_input)


def after_copy(file_id: int, qr: bool, group: bool = False) -> list[dict[str, object]]:
    """What a landed copy spawns (the same whoever reports the landing)."""
    out: list[dict[str, object]] = [
        {"name": f"probe:{file_id}", "kind": PROBE.name, "input": {"file_id": file_id}}
    ]
    if qr:
        # the decoder reads the file itself: it runs beside the probe, not after it
        out.append({"name": f"qr:{file_id}", "kind": QR.name, "input": {"file_id": file_id}})
    if qr and group:
        # earlier renders (issue 18): once this clip is read, group the listing again and start
        # the sessions that no clip still being read can change
        out.append(
            {
                "name": f"group:{file_id}",
                "kind": GROUP.name,
                "depends_on": [f"?probe:{file_id}", f"?qr:{file_id}"],
                "input": {"file_id": file_id, "partial": True},
            }
        )
    return out


def card_import_steps(
    card_id: str, qr_file_ids: Sequence[int], listed_ids: Sequence[int]
) -> list[StepDef]:
    """Copies of the QR candidates, each spawning its probe, decode and a partial `group:<file>`
    (the sessions closed so far start at once, issue 18); then `group`, once every clip is read,
    groups what is left (a candidate never decoded counts as unreadable)."""
    steps = [copy_step(f, qr=True, group=True) for f in qr_file_ids]
    # '?': a clip that cannot be probed or decoded fails only itself; grouping goes on with
    # what could be read (and puts a session a bad clip might have opened in review)
    group = StepDef(
        "group",
        GROUP.name,
        depends_on=("copy:*", "?probe:*", "?qr:*", "?group:*"),
        input={"card_id": card_id, "file_ids": list(listed_ids)},
    )
    return [*steps, group]


def jump_steps(
    session_key: str,
    footage_ids: Sequence[int],
    *,
    edit: bool = False,
    deliverables: frozenset[Deliverable] = frozenset({Deliverable.VIDEO}),
    deliver: bool = False,
) -> list[StepDef]:
    """A session's jump pipeline; with `edit`, a `phases` step finds the jump in the clips'
    telemetry and sound and the render cuts the video to it.

    `deliverables` (what the booking bought, agents/deliverables.py): `render` and `publish`
    only when the video was bought, a `photos` step only when photos were; each is its own step,
    so one is retried without the others.

    `deliver` (issue 16): a `deliver` step after `publish` and `photos` (whichever exist; '?':
    a failed photos step still delivers the video, and the email says so). It is always there
    in the real pipeline: a booking without an email finishes it as "nothing to send", and an
    email set later (assign) runs it again."""
    copies = [copy_step(f, qr=False) for f in footage_ids]
    phases = (
        [StepDef("phases", PHASES.name, depends_on=("?probe:*",), input={"session": session_key})]
        if edit
        else []
    )
    video: list[StepDef] = []
    if Deliverable.VIDEO in deliverables:
        video = [
            # '?probe:*': an unreadable clip is left out with a warning; retrying its probe
            # renders again with it
            StepDef(
                "render",
                RENDER.name,
                depends_on=("?probe:*", "booking", *(["phases"] if edit else [])),
                input={"session": session_key},
            ),
            StepDef(
                "publish", PUBLISH.name, depends_on=("render",), input={"session": session_key}
            ),
        ]
    photos: list[StepDef] = []
    if Deliverable.PHOTOS in deliverables:
        # '?phases': the photos need the booking (their names), not the edit; a failed phases
        # step leaves them picked from the whole footage (with a warning)
        photos = [
            StepDef(
                "photos",
                PHOTOS.name,
                depends_on=("?probe:*", "booking", *(["?phases"] if edit else [])),
                input={"session": session_key},
            )
        ]
    delivery: list[StepDef] = []
    if deliver:
        after = [*(["?publish"] if video else []), *(["?photos"] if photos else [])]
        delivery = [
            StepDef(
                "deliver",
                DELIVER.name,
                depends_on=("booking", *after),
                input={"session": session_key},
            )
        ]
    return [
        *copies,
        StepDef("booking", BOOKING.name, input={"session": session_key}),
        *phases,
        *video,
        *photos,
        *delivery,
    ]
