"""The backend's one settings object.

Built once in ``main()`` from ``SKYREEL_*`` environment variables (and an optional ``.env``), then
passed down. Every field says what it is for. A URL left empty means "start the embedded one"
(see :mod:`streams.stack.local`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_TOKEN = "skyreel-dev-admin-token"
#: production refuses a shorter admin token (red-team D18: "a" and " " were accepted)
MIN_ADMIN_TOKEN_CHARS = 32


class InsecureSettings(ValueError):
    """Settings that are fine on a laptop but refused in production."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SKYREEL_", env_file=".env", extra="ignore", validate_default=True
    )

    environment: Literal["development", "production"] = Field(
        "development", description="'production' refuses insecure defaults (admin token)."
    )
    data_dir: Path = Field(
        Path(".skyreel"), description="Where the embedded services keep their data and logs."
    )
    database_url: str = Field(
        "", description="postgresql+asyncpg://... ; empty: start embedded PostgreSQL."
    )
    redis_url: str = Field("", description="redis://host:port/db ; empty: start embedded Redis.")
    kafka_url: str = Field(
        "", description="Kafka bootstrap 'host:port[,host:port]'; empty: start embedded Tansu."
    )
    kafka_local_tuning: bool | None = Field(
        None,
        description="Short group session/heartbeat timings for a local single broker. "
        "Default: on when the embedded broker is used.",
    )
    topic_prefix: str = Field(
        "skyreel",
        pattern=r"^[a-zA-Z0-9._-]{1,40}$",
        description="Prefix of every Kafka topic and consumer group.",
    )
    topic_partitions: int = Field(4, ge=1, le=256, description="Partitions of source topics.")
    app_id: str = Field("skyreel", description="Faust application id (consumer group).")
    share_root: Path = Field(
        Path(".skyreel/share"), description="Shared volume: copied footage lands under it."
    )
    output_dir: Path = Field(
        Path(".skyreel/output"), description="Where finished jump videos are published."
    )
    low_space_bytes: int = Field(
        2 * 1024**3,
        ge=0,
        description="Free bytes below which the share or the output folder counts as low on "
        "space: /api/health reports 'degraded' (low_space) and `skyreel run` says so; 0: never.",
    )
    hub_host: str = Field("127.0.0.1", description="Interface the hub listens on.")
    hub_port: int = Field(8800, ge=0, le=65535, description="Port of the hub; 0 picks a free one.")
    hub_id: str = Field("", description="Name of this hub replica; empty: host-pid.")
    admin_token: SecretStr = Field(
        SecretStr(DEV_TOKEN), description="Bearer token for mutating API calls."
    )
    reads_open: bool = Field(True, description="Allow status reads without a token (LAN).")

    # hub connection limits (issue 14, red-team D4 and failed-auth throttling). Loopback is a
    # peer like any other: a station holds one socket plus a few REST calls, a dashboard
    # browser about six plus its live socket, and a handful of stations may share one NAT
    # address, so 128 per peer never bites a normal site yet bounds one flooding address; the
    # overall limit stays well below the descriptor limit (the hub raises its soft
    # RLIMIT_NOFILE to the hard one and keeps 256 spare for the database, Kafka, Redis and
    # media files). At the overall limit the oldest connection that has not sent a complete
    # request yet is closed to make room; only when every one is busy is a new one refused.
    hub_max_connections: int = Field(
        4096,
        ge=16,
        le=1_000_000,
        description="Connections the hub holds open at most (HTTP and WebSocket together); "
        "lowered at start to fit the process's file-descriptor limit.",
    )
    hub_max_connections_per_peer: int = Field(
        128,
        ge=2,
        le=1_000_000,
        description="Connections one client IP address may hold open at once; more are "
        "refused with a 503.",
    )
    hub_header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A connection must complete its request headers (and a WebSocket its "
        "handshake) within this many seconds of connecting or of its previous response, "
        "else it is closed (slow-loris, idle sockets).",
    )
    hub_keepalive_timeout_s: int = Field(
        5, ge=1, le=300, description="An idle keep-alive HTTP connection is closed after this."
    )
    hub_auth_failures_per_peer: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Failed detector authentications one client IP may have within "
        "hub_auth_failure_window_s before its handshakes are refused without a token check.",
    )
    hub_auth_failure_window_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="The sliding window of hub_auth_failures_per_peer, and how long a peer "
        "that reached it is refused.",
    )
    qr_candidate_max_bytes: int = Field(
        150_000_000,
        ge=0,
        description="Video files of unknown duration up to this size are QR candidates and "
        "are copied first (a 2-10 s clip at a GoPro's 100 Mbit/s is under ~125 MB); a clip "
        "whose duration is known is judged by qr_candidate_max_s.",
    )
    jump_gap_minutes: float = Field(
        20,
        gt=0,
        le=24 * 60,
        description="Footage recorded more than this many minutes after the clip before it "
        "starts a new jump (a load cycle); without a QR ticket it waits for a person.",
    )
    clock_jump_days: float = Field(
        30,
        gt=0,
        description="A camera clock that steps forward by more than this many days between two "
        "consecutive recordings (or steps backwards at all) is reported as wrong, not read as a "
        "gap.",
    )
    max_files_per_list: int = Field(
        20_000, ge=1, le=20_000, description="Longest file list a detector may send."
    )

    # detector rate limit (issue 14)
    detector_card_rate: float = Field(
        2.0,
        gt=0,
        le=1000,
        description="Card events (card_inserted, file_list, card_removed) per second one "
        "detector may send on average (a token bucket per detector). Over it the hub answers "
        "an error 'rate_limited' and closes with 1013; the detector reconnects after a backoff "
        "and announces its present cards again.",
    )
    detector_card_burst: int = Field(
        40,
        ge=2,
        le=10_000,
        description="Card events one detector may send at once before the rate applies: more "
        "than a station re-announcing every card in its readers after a reconnect (2 frames a "
        "card, one more per 20,000 files).",
    )
    worker_concurrency: int = Field(
        2, ge=1, le=64, description="Executor threads for QR decoding/probing per Faust worker."
    )
    render_concurrency: int = Field(1, ge=1, le=32, description="Jobs per render worker.")
    log_level: str = Field("INFO", description="Python logging level.")

    # --- pipeline ---
    reconcile_interval_s: float = Field(
        30.0, gt=0, description="Seconds between reconciliation passes (one runs at start)."
    )
    runner_concurrency: int = Field(
        4, ge=1, le=64, description="Step-runner actors per Faust worker."
    )
    step_hand_off: bool = Field(
        True,
        description="A worker runs the agent steps its own results made ready at once, without "
        "the broker hop (fast; a fan-out then runs on one worker). Off: every ready step goes "
        "through step-requests and spreads over the workers.",
    )
    heap_settle_after_s: float = Field(
        5.0,
        ge=-1,
        le=3600,
        description="Seconds after start-up when the worker collects and freezes its heap once, "
        "so full garbage collections stop pausing the pipeline (agents/heap.py); -1: never.",
    )

    # --- rendering and branding (per dropzone; issue 17: a default that looks like a product) ---
    # Unset, the intro and the watermark are generated from `dropzone_name` (and the logo) by
    # agents/render/default_branding.py; "false" turns one off.
    branding_intro: Path | Literal[False] | None = Field(
        None,
        description="Intro clip played before the jump. Unset: a 2.5 s card generated from "
        "SKYREEL_DROPZONE_NAME (and the logo); 'false': no intro.",
    )
    branding_logo: Path | Literal[False] | None = Field(
        None,
        description="Watermark image (PNG with alpha), also shown on the generated intro card. "
        "Unset: the dropzone name as a text watermark; 'false': no watermark.",
    )
    branding_corner: Literal["tl", "tr", "bl", "br"] = Field(
        "br", description="Watermark corner: tl, tr, bl or br."
    )
    branding_opacity: float = Field(0.8, ge=0.0, le=1.0, description="Watermark opacity.")
    branding_title: bool = Field(True, description="Draw the passenger's name as a title.")
    branding_font: Path | None = Field(
        None, description="TrueType font for the title and the generated intro and watermark."
    )
    branding_intro_seconds: float = Field(
        2.5, ge=1.0, le=10.0, description="Length of the generated intro card."
    )

    @field_validator("branding_intro", "branding_logo", mode="before")
    @classmethod
    def _off_words(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().lower() in ("false", "off", "no", "0"):
                return False
            if not value.strip():
                return None
        return value

    def branding_summary(self) -> str:
        """The start-up line: which branding renders get (before anything is generated)."""

        def what(value: Path | Literal[False] | None, default: str) -> str:
            if value is False:
                return "off"
            return f"file {value}" if value is not None else default

        name = f"generated from dropzone name {self.dropzone_name!r}"
        logo = f" and logo {self.branding_logo}" if isinstance(self.branding_logo, Path) else ""
        return (
            f"branding: intro {what(self.branding_intro, name + logo)}, "
            f"watermark {what(self.branding_logo, name)}, "
            f"title {'on' if self.branding_title else 'off'}"
        )

    # --- end of rendering and branding ---
    render_width: int = Field(1920, ge=160, le=7680, description="Output width in pixels.")
    render_height: int = Field(1080, ge=90, le=4320, description="Output height in pixels.")
    render_fps: int = Field(30, ge=10, le=120, description="Output frame rate.")
    render_preset: str = Field(
        "veryfast",
        pattern=r"^(ultrafast|superfast|veryfast|faster|fast|medium|slow)$",
        description="x264 preset of the output.",
    )
    render_crf: int = Field(22, ge=0, le=51, description="x264 CRF of the output (quality).")
    # how a render uses the machine (docs/architecture.md "Rendering camera footage (4K HEVC)")
    render_decode_threads: int = Field(
        0,
        ge=0,
        le=64,
        description="Decoder threads per footage input of a render; 0: one per core (FFmpeg's "
        "own choice is cores + 1).",
    )
    render_encode_threads: int = Field(
        0,
        ge=0,
        le=64,
        description="x264 threads of a render; 0: one per core (x264's own choice is 1.5 per "
        "core: on 2 cores 2 threads measured 1.2x less CPU for the same output).",
    )
    render_skip_nonref: bool = Field(
        True,
        description="Decode 60 fps camera clips at half rate where every other frame is a "
        "non-reference one and the output keeps only the others (the same frames shown, ~1.7x "
        "less decoding; checked per clip from its first packets, agents/media/refs.py).",
    )
    render_stall_timeout_s: float = Field(
        60.0, gt=0, description="Abort a render whose FFmpeg makes no progress for this long."
    )
    render_heartbeat_s: int = Field(
        30, ge=2, description="A render job not heard of for this long is retried elsewhere."
    )

    # --- the edit (issue 15): a jump cut from its telemetry and sound (agents/edit.py) ---
    edit_jumps: bool = Field(
        True,
        description="Cut each jump video to the jump found in the clips' telemetry and sound "
        "(a `phases` step before the render); a jump the detection is not sure of (no freefall "
        "found, sources disagreeing) waits for an operator. Off: every clip is rendered whole.",
    )
    edit_door_s: float = Field(10.0, ge=0, le=120, description="Seconds kept before the exit.")
    edit_after_landing_s: float = Field(
        8.0, ge=0, le=120, description="Seconds kept after the landing."
    )
    edit_interview_s: float = Field(
        0.0, ge=0, le=120, description="Seconds of pre-jump interview from the first clip."
    )
    edit_exit_replay_s: float = Field(
        0.0, ge=0, le=30, description="Seconds of the exit replayed in slow motion (0: none)."
    )
    edit_exit_replay_speed: float = Field(
        0.5, ge=0.1, le=1.0, description="Playback speed of the exit replay."
    )

    # --- the music bed (issue 15): an audio file mixed under an edited jump's sound ---
    edit_music_path: Path | None = Field(
        None,
        description="Audio file (mp3, m4a, wav, ...) mixed under the original sound of every "
        "edited jump video, looped when shorter; none: the original sound alone. Whole-clip "
        "renders (no edit) get no music.",
    )
    edit_music_level_db: float = Field(
        -18.0, ge=-60, le=0, description="The music's gain in dB; the original sound stays at 0."
    )
    edit_music_fade_in_s: float = Field(
        2.0, ge=0, le=60, description="Seconds the music fades in at the video's start."
    )
    edit_music_fade_out_s: float = Field(
        3.0, ge=0, le=60, description="Seconds the music fades out before the video's end."
    )

    @field_validator("edit_music_path")
    @classmethod
    def _music_is_a_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise ValueError(
                f"SKYREEL_EDIT_MUSIC_PATH {str(path)!r} {what}: point it at an audio file "
                "the render workers can read, or unset it to render without music"
            )
        return path

    # --- end of the music bed ---

    # --- the passenger page (issue 16, item 2): /p/<token> links (streams/hub/passenger_*.py) ---
    dropzone_name: str = Field(
        "skyreel",
        min_length=1,
        max_length=100,
        description="The dropzone's name: the title of the passenger page and its downloads.",
    )
    passenger_link_secret: SecretStr = Field(
        SecretStr(""),
        description="Key that signs passenger links (at least 32 characters). Empty: one is "
        "generated once and kept in <data_dir>/passenger_link_secret, so links survive "
        "restarts; hub replicas on other machines need the same value set here.",
    )
    passenger_link_days: int = Field(
        30, ge=1, le=365, description="Days a new passenger link stays valid."
    )
    passenger_link_base_url: str = Field(
        "",
        pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$",
        description="Public address passenger links are handed out with (e.g. "
        "https://videos.example-dropzone.com); empty: the address the API call came to, or "
        "http://<hub_host>:<hub_port> from the CLI.",
    )

    @model_validator(mode="after")
    def _link_secret_long_enough(self) -> Settings:
        secret = self.passenger_link_secret.get_secret_value()
        if secret and len(secret.strip()) < MIN_ADMIN_TOKEN_CHARS:
            raise InsecureSettings(
                f"SKYREEL_PASSENGER_LINK_SECRET must be at least {MIN_ADMIN_TOKEN_CHARS} random "
                "characters (e.g. `openssl rand -hex 32`), or empty to have one generated"
            )
        return self

    # --- end of the passenger page block ---

    # --- dashboard login (issue 17): one login per browser, a session cookie (hub/login.py) ---
    dashboard_session_hours: float = Field(
        12.0,
        gt=0,
        le=24 * 30,
        description="How long a dashboard login lasts: the signed session cookie POST "
        "/api/login sets expires after this many hours (then the browser logs in again).",
    )
    dashboard_login_failures_per_peer: int = Field(
        5,
        ge=1,
        le=10_000,
        description="Wrong admin tokens one client IP may type at /login within "
        "hub_auth_failure_window_s before its logins are refused for that long.",
    )

    # --- photos (issue 16): what a booking bought, and the stills of a jump (agents/photos) ---
    default_product: Literal["video", "photos", "both"] = Field(
        "video",
        description="What a jump delivers when its booking names no product (a ticket without "
        "one, a booking assigned by hand): video, photos or both (agents/deliverables.py).",
    )
    photos_count: int = Field(
        30, ge=1, le=200, description="Stills picked per jump when photos were bought."
    )
    photos_min_spacing_s: float = Field(
        2.0, ge=0.0, le=60.0, description="Seconds at least between two picked stills."
    )

    # --- retention (issue 16, item 5): how long media and personal data are kept (agents/purge.py)
    retention_media_days: int = Field(
        default=30,
        ge=0,
        le=36500,
        description="Days a booking's videos, photos and share copies are kept after its last "
        "jump was delivered (published); then the scheduled purge deletes them. 0: never "
        "automatically (`skyreel purge` still works).",
    )
    retention_personal_days: int = Field(
        default=90,
        ge=0,
        le=36500,
        description="Days a booking's personal data (passenger name, email, ticket text) is kept "
        "after its newest jump was recorded; then the scheduled purge removes it with every "
        "file and revokes its links. 0: never automatically.",
    )
    retention_check_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often the worker applies the retention rules (seconds).",
    )
    # --- end of the retention block ---

    # --- QR candidates and budget (issue 18): agents/qr/budget.py, storage/imports.py ---
    qr_candidate_max_s: float = Field(
        15.0,
        ge=0,
        le=3600,
        description="A clip whose container says it lasts at most this many seconds is a QR "
        "candidate (copied first, searched for a ticket); a longer one never is. A clip of "
        "unknown duration (an older detector, a truncated or non-MP4 file) is judged by "
        "qr_candidate_max_bytes instead.",
    )
    qr_max_frames: int = Field(
        600,
        ge=1,
        le=100_000,
        description="The QR search budget of one clip, in frames decoded (deterministic: the "
        "same clip gives the same result and frame count however loaded the machine is).",
    )
    qr_safety_stop_s: float = Field(
        90.0,
        gt=0,
        le=3600,
        description="Wall-clock safety stop of one QR search, far above any normal search (a "
        "few seconds for qr_max_frames frames of 1080p) and under the qr step's 120 s timeout: "
        "reaching it is an error (the qr step fails with the reason and is retried), never a "
        "silent 'no QR'.",
    )
    # --- end of QR candidates and budget ---

    # --- email (issue 16): the passenger link, sent once per deliverable set ---
    # (agents/jobs/deliver_step.py). No SMTP host: messages are written to <data_dir>/outbox/.
    smtp_host: str = Field(
        "",
        max_length=253,
        description="SMTP server the passenger emails go through; empty: no email is sent, "
        "each message is written as an .eml file to <data_dir>/outbox/ (shown on the dashboard).",
    )
    smtp_port: int = Field(
        0, ge=0, le=65535, description="SMTP port; 0: 465 with SSL, 587 with STARTTLS, else 25."
    )
    smtp_username: str = Field("", max_length=200, description="SMTP login; empty: no login.")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password.")
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        "starttls",
        description="starttls (upgrade when the server offers it), ssl (TLS from the start, "
        "port 465) or none (plain; a local relay only).",
    )
    smtp_from: str = Field(
        "",
        max_length=254,
        description="The From address; empty: videos@<the SMTP host's domain> (or "
        "skyreel@localhost in outbox mode).",
    )
    smtp_timeout_s: float = Field(
        30.0, gt=0, le=300, description="Seconds an SMTP connection or command may take."
    )
    # --- end of the email block ---

    @model_validator(mode="after")
    def _refuse_insecure(self) -> Settings:
        token = self.admin_token.get_secret_value()
        if self.environment == "production" and (
            token == DEV_TOKEN or len(token.strip()) < MIN_ADMIN_TOKEN_CHARS
        ):
            raise InsecureSettings(
                f"SKYREEL_ADMIN_TOKEN must be a secret of at least {MIN_ADMIN_TOKEN_CHARS} "
                "random characters in production (e.g. `openssl rand -hex 32`), not the "
                "development default"
            )
        return self

    @model_validator(mode="after")
    def _connection_limits_fit(self) -> Settings:
        if self.hub_max_connections_per_peer > self.hub_max_connections:
            raise ValueError(
                f"SKYREEL_HUB_MAX_CONNECTIONS_PER_PEER ({self.hub_max_connections_per_peer}) "
                f"cannot exceed SKYREEL_HUB_MAX_CONNECTIONS ({self.hub_max_connections})"
            )
        return self

    def branding(self) -> dict[str, object]:
        """The render job's branding mapping (agents.render.branding.Branding fields): the
        configured files only; agents/render/default_branding.py adds the generated ones."""
        out: dict[str, object] = {
            "logo_corner": self.branding_corner,
            "logo_opacity": self.branding_opacity,
            "title_enabled": self.branding_title,
            "width": self.render_width,
            "height": self.render_height,
            "fps": self.render_fps,
            "preset": self.render_preset,
            "crf": self.render_crf,
        }
        for key, path in (
            ("intro_path", self.branding_intro),
            ("logo_path", self.branding_logo),
            ("title_font", self.branding_font),
        ):
            if isinstance(path, Path):
                out[key] = str(path.resolve())
        return out

    def edit(self) -> dict[str, float]:
        """The edit's settings (agents.edit.EditSettings fields)."""
        return {
            "door_s": self.edit_door_s,
            "after_landing_s": self.edit_after_landing_s,
            "interview_s": self.edit_interview_s,
            "exit_replay_s": self.edit_exit_replay_s,
            "exit_replay_speed": self.edit_exit_replay_speed,
        }

    @property
    def render_staging(self) -> Path:
        """Where render workers write before `publish` moves a video to the output folder."""
        return self.share_root / "renders"

    @property
    def uses_local_kafka_tuning(self) -> bool:
        if self.kafka_local_tuning is not None:
            return self.kafka_local_tuning
        return not self.kafka_url

    def hub_name(self) -> str:
        import os
        import socket

        return self.hub_id or f"{socket.gethostname()}-{os.getpid()}"
