"""The processes `skyreel` starts that run agents code: the Faust worker, a render worker, and
the demo card writer. The CLI (streams/cli) reaches agents only through here, an edge above
them (the `cli-no-agents` contract).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.demo_card import DemoCardError, add_jump, load_demo_card, summary_table, write_demo_card
from streams.settings import Settings


def run_worker(settings: Settings) -> int:
    """`skyreel worker`: the Faust worker (returns only via SystemExit)."""
    from agents.worker import run_worker as run

    return run(settings)


def run_render_worker(settings: Settings) -> int:
    """`skyreel render-worker`: one render worker (FFmpeg jobs from Redis)."""
    from agents.render.worker import run_render_worker as run

    return run(settings)


def demo_card(args: argparse.Namespace) -> int:
    """`skyreel demo-card DIR`: write (or --add to) a synthetic GoPro card; exit code."""
    width, _, height = args.resolution.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        print(f"--resolution must be WxH, got {args.resolution!r}", file=sys.stderr)
        return 2
    root = Path(args.directory)
    try:
        if args.add:
            for _ in range(args.jumps):
                add_jump(root)
            card = load_demo_card(root)
        else:
            card = write_demo_card(
                root,
                args.jumps,
                seed=args.seed,
                footage_seconds=args.footage_seconds,
                size=size,
            )
    except DemoCardError as exc:
        print(f"skyreel demo-card: {exc}", file=sys.stderr)
        return 1
    print(summary_table(card))
    print(f"\n{len(card.all_files)} files under {root / 'DCIM'}")
    return 0
