# syntax=docker/dockerfile:1
# rls-cds container image: one image for every role (api, worker, beat), chosen by the command:
#   docker run IMAGE serve --host 0.0.0.0     (the default)
#   docker run IMAGE worker
#   docker run IMAGE beat
# Configuration is environment only (RLS_* and REDIS_URL); `docker run IMAGE config show` prints it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compilers live here only (wheels missing for an architecture get built here) ---------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Optional extras, e.g. --build-arg PIP_EXTRAS=[tracing] for OpenTelemetry (docs/operations.md §8).
ARG PIP_EXTRAS=""
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p src/rls_cds && touch src/rls_cds/__init__.py \
 && pip install --upgrade pip \
 && pip install ".${PIP_EXTRAS}" \
 && pip uninstall -y rls-cds
COPY src ./src
RUN pip install --no-deps . && python -m compileall -q /opt/venv/lib

# --- runtime: slim base, no build tools, non-root ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="rls-cds" \
      org.opencontainers.image.description="CDS Hooks service for restless legs syndrome causes and aggravators" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 rls \
 && useradd --system --uid 10001 --gid rls --home-dir /app --no-create-home --shell /usr/sbin/nologin rls
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Content is data: the tables and the service catalogue ship with the image, read-only for the user.
COPY terminology ./terminology
COPY cds-hooks ./cds-hooks
RUN mkdir -p /app/var/redis /app/var/reports /app/var/beat && chown -R rls:rls /app/var
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RLS_HOST=0.0.0.0 \
    RLS_PORT=8080 \
    RLS_TERMINOLOGY_DIR=/app/terminology \
    RLS_CATALOGUE_DIR=/app/cds-hooks \
    RLS_EMBEDDED_REDIS_DIR=/app/var/redis \
    RLS_REPORTS_DIR=/app/var/reports \
    RLS_BEAT_SCHEDULE_FILE=/app/var/beat/celerybeat-schedule
USER 10001:10001
EXPOSE 8080
# Liveness of the API role; compose gives worker and beat their own checks. No curl in a slim image:
# the interpreter is already there.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RLS_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["rls-cds"]
CMD ["serve", "--host", "0.0.0.0"]
