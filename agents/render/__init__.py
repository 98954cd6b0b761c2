"""Render workers: plan one FFmpeg run per passenger video, run it, verify, publish atomically.

Modules: `branding` (per-dropzone look), `plan` (pure FFmpeg argument list), `ffmpeg` (locate and
run FFmpeg with progress + stall detection), `identity` (a session's output name, input
fingerprint and the manifest beside each output), `job` (render one session safely), `queue` (saq
job function and worker settings), `errors` (permanent vs retryable failures).
"""
