"""The `skyreel` command: operator commands and process entry points (an edge)."""
