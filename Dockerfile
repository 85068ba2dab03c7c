# The ingester and the DataSync simulator in one image.
#   docker build -t datasync-ingest .
#   docker run --rm -e API_KEY=... -e DATABASE_URL=postgresql://... datasync-ingest
# Both stages use the same base so the venv's interpreter symlinks stay valid when copied.

FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Only requirements.txt here: the dependency layer is rebuilt when the pins change, not when the code does.
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/data
# A fixed uid so a bind-mounted DATA_DIR can be chowned to it; the embedded PostgreSQL refuses to run as root.
RUN useradd --no-log-init --create-home --uid 10001 --user-group app \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY ingest.py ./
COPY ingest/ ./ingest/
COPY datasync_sim/ ./datasync_sim/
USER 10001:10001
# Absolute, so that one-off containers can work in another directory (run-ingestion.sh export).
ENTRYPOINT ["python", "/app/ingest.py"]
