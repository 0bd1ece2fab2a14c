# syntax=docker/dockerfile:1
#
# One image for both app roles:
#   pipeline  (default CMD)  python -m pipeline schedule
#   dashboard                streamlit run dashboard/app.py ...
# See docker-compose.yml. No secret is baked in: DATABASE_URL, the DB password
# and COINGECKO_API_KEY are passed at run time as environment variables.

############################
# Builder: dependencies into /opt/venv
############################
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers only for a dependency that ships no wheel; this stage is thrown away.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# The hashed runtime lock alone first: this layer stays cached until it changes.
# (Test packages live in requirements-dev.lock and never reach the image.)
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

############################
# Runtime: slim, no build tools, non-root
############################
FROM python:3.11-slim AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/data

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Code stays owned by root (read-only for the app user); only /data is writable.
COPY pipeline/ ./pipeline/
COPY dashboard/ ./dashboard/
COPY sql/ ./sql/
COPY .streamlit/ ./.streamlit/
COPY data/sample/ ./data/sample/

# Numeric uid:gid of the `app` user, so runAsNonRoot-style checks can verify it.
USER 10001:10001

EXPOSE 8501

CMD ["python", "-m", "pipeline", "schedule"]
