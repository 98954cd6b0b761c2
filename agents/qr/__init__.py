"""Booking QR recognition: detectors, clip sampling strategy, payload parsing."""
