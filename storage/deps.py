"""Dependency references of pipeline steps, and the one rule of what a step waits for (pure,
stdlib only): used by the pipeline core (agents/pipeline/dag.py) to decide readiness and by the
status API (storage/status.py) to draw the same edges.

A dependency is a step name or a prefix pattern (``probe:*``: every step whose name starts with
``probe:``); a leading ``?`` makes it *settled* (satisfied once its steps finished, however). A
pattern also waits for every step that may still spawn a match: a step with a ``spawns`` pattern
overlapping it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

SETTLED = "?"


def is_settled(ref: str) -> bool:
    return ref.startswith(SETTLED)


def target(ref: str) -> str:
    """The name or pattern a dependency refers to, without the `?` of a settled dependency."""
    return ref[1:] if ref.startswith(SETTLED) else ref


def is_pattern(ref: str) -> bool:
    return ref.endswith("*")


def matches(pattern: str, name: str) -> bool:
    return name.startswith(target(pattern)[:-1])


def overlaps(a: str, b: str) -> bool:
    """Whether two prefix patterns can match a common name."""
    pa, pb = target(a)[:-1], target(b)[:-1]
    return pa.startswith(pb) or pb.startswith(pa)


def waits_for(
    depends_on: Iterable[str], names: Iterable[str], spawns: Mapping[str, Sequence[str]]
) -> list[tuple[str, bool]]:
    """Every name a step with ``depends_on`` waits for among ``names`` (exact names are kept
    even when unknown), and whether finishing in any way is enough (settled). ``spawns``: the
    ``spawns`` patterns of the steps that have any."""
    known = sorted(names)
    out: list[tuple[str, bool]] = []
    for ref in sorted(depends_on):
        settled, name = is_settled(ref), target(ref)
        if not is_pattern(name):
            out.append((name, settled))
            continue
        out.extend((n, settled) for n in known if matches(name, n))
        out.extend(
            (s, False)
            for s, patterns in sorted(spawns.items())
            if any(overlaps(p, name) for p in patterns)
        )
    return out


def edges(
    steps: Iterable[tuple[str, Sequence[str]]], spawns: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, str]]:
    """(from, to) edges of a DAG: every step to each known step it waits for."""
    nodes = list(steps)
    names = {name for name, _ in nodes}
    spawners = {n: p for n, p in (spawns or {}).items() if p}
    out = {
        (up, name)
        for name, deps in nodes
        for up, _ in waits_for(deps, names, spawners)
        if up != name and up in names
    }
    return sorted(out)
