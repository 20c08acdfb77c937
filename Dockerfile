# syntax=docker/dockerfile:1
# deskbridge image: `docker run IMAGE` serves HTTP on 8080; `docker run IMAGE worker` runs a worker.

# ---- builder: a self-contained venv with deskbridge and its runtime deps ----
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
    && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} +

# ---- final: only the venv on a clean slim base ----
FROM python:3.11-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DESKBRIDGE_HOST=0.0.0.0 \
    DESKBRIDGE_PORT=8080

RUN groupadd --system --gid 10001 deskbridge \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /app \
       --shell /usr/sbin/nologin deskbridge

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# 8080: HTTP. 5060-5061: SIP, for accounts with a sip channel (listen on a port >= 1024
# or give the container CAP_NET_BIND_SERVICE; the image runs as a non-root user).
EXPOSE 8080 5060/udp 5060/tcp 5061/tcp

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DESKBRIDGE_PORT', '8080'), timeout=4).status == 200 else 1)"]

ENTRYPOINT ["deskbridge"]
CMD ["serve"]
