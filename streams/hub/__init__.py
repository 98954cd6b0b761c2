"""The hub: the detector WebSocket, the status API, live status and the dashboard (an edge)."""
