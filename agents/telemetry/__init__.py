"""Telemetry and sound of a jump's clips, and the phases found in them (issue 15).

Pure cores (no I/O): `series` (typed time series and chapter handling), `sound` (band energies of
an audio sample array), `marks` (the records), `motion` and `sound_marks` (the two detectors),
`phases` (plane > exit > freefall > opening > canopy > landing > ground, fused from both),
`gpmf_writer` (GPMF KLV encoding), `profile` (synthetic jump profiles with their ground truth).
I/O at the edges: `gpmf_reader` (the `gpmd` track of an MP4), `audio_decode` (PyAV audio to a
sample array), `synthetic` (writes a synthetic jump as MP4 chapters).
"""
