# skyreel backend image: hub, Faust worker, render worker and `skyreel migrate` (the command
# picks which; see docker-compose.yml). FFmpeg and libzbar (QR decoding) come from Debian.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg libzbar0 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies change less often than code: install them in their own layer first.
COPY pyproject.toml README.md ./
RUN mkdir -p streams agents detector storage benchmarks \
    && touch streams/__init__.py agents/__init__.py detector/__init__.py \
       storage/__init__.py benchmarks/__init__.py \
    && pip install . \
    && pip uninstall -y skyreel \
    && rm -rf streams agents detector storage benchmarks build *.egg-info

COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app skyreel \
    && mkdir -p /share /output /tmp/skyreel \
    && chown skyreel /share /output /tmp/skyreel

USER skyreel
VOLUME ["/share", "/output"]
EXPOSE 8800
ENTRYPOINT ["skyreel"]
CMD ["hub"]
