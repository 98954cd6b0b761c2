"""``python -m streams.cli``: the same as the ``skyreel`` command."""

from streams.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
