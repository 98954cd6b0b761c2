"""Small MP4s for the telemetry tests: a picture, optionally a gpmd track of given payloads."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def video_with_gpmd(path: Path, payloads: list[bytes] | None = None) -> Path:
    """2 s of black 64x48 video; with `payloads`, a gpmd track of one payload per second."""
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=5)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        ds = None
        if payloads is not None:
            ds = out.add_data_stream("bin_data")
            ds.codec_tag = "gpmd"
            ds.time_base = Fraction(1, 1000)
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        for k, data in enumerate(payloads or []):
            packet = av.Packet(data)
            packet.stream, packet.time_base = ds, Fraction(1, 1000)
            packet.pts = packet.dts = k * 1000
            packet.duration = 1000
            out.mux(packet)
        out.mux(vs.encode(None))
    return path
