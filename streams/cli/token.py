"""`skyreel token`: the admin token the dashboard and the API's actions want, and the dashboard's
address, from the data dir (the token alone on stdout, so ``$(skyreel token)`` works)."""

from __future__ import annotations

import argparse
import sys

from streams.settings import DEV_TOKEN, Settings
from streams.stack.admin_token import read_admin_token, token_path
from streams.stack.discovery import Found, read_stack


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser(
        "token",
        help="print the admin token (and the dashboard URL) of the local stack",
        description="Prints the admin token that the dashboard's actions and the API's "
        "POST calls need: SKYREEL_ADMIN_TOKEN when set, else the one `skyreel run` generated "
        "in SKYREEL_DATA_DIR/admin_token. The dashboard URL goes to stderr.",
    ).set_defaults(handler=token_cli)


def token_cli(settings: Settings, args: argparse.Namespace) -> int:
    found: Found = read_stack(settings.data_dir)
    data_dir = found.data_dir
    if found.info is not None and found.info.dashboard_url:
        where = f"dashboard: {found.info.dashboard_url}  (log in with this token)"
    elif found.info is not None:
        where = "the running stack's hub has no fixed port (SKYREEL_HUB_PORT=0)"
    else:
        note = f"; {found.note}" if found.note else ""
        where = f"no running skyreel stack in {data_dir} (start one with `skyreel run`{note})"
    token = settings.admin_token.get_secret_value()
    generated = read_admin_token(data_dir)
    if generated is not None and token == generated:
        source = f"from {token_path(data_dir)}"
    elif token != DEV_TOKEN:
        source = "from SKYREEL_ADMIN_TOKEN"
    else:
        if found.info is not None and not found.info.admin_token_file:
            why = (
                f"the stack running in {data_dir} was started with SKYREEL_ADMIN_TOKEN, "
                "which is not stored; use that value"
            )
        else:
            why = (
                f"no admin token in {token_path(data_dir)} yet (`skyreel run` generates one "
                "when SKYREEL_ADMIN_TOKEN is not set)"
            )
        print(f"skyreel token: {why}\n{where}", file=sys.stderr)
        return 1
    print(token)
    print(f"{where}\n({source})", file=sys.stderr)
    return 0
