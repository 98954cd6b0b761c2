"""The local stack: embedded services, their supervisor, the demo (an edge)."""
