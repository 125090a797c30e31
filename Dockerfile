# The CDS service under granian (`cds-service serve`). Build: docker build -t cds-service .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
RUN pip install .

# The schemas are package data; CDS_SCHEMA_DIR names conformance/schemas, a link to those same files
# (README, Configuration: an override only). The patients and examples serve the loader and curl.
COPY conformance ./conformance
COPY examples ./examples
ENV CDS_SCHEMA_DIR=/app/conformance/schemas \
    CDS_DATABASE=/data/cds_service.sqlite3 \
    MALLOC_ARENA_MAX=2
# MALLOC_ARENA_MAX: glibc arenas per thread fragment memory; see cds_service/cli/__init__.py (serve)

RUN useradd --system --uid 10001 --home-dir /app cds && mkdir /data && chown cds /data
USER cds
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# `serve` checks every CDS_* variable (exit 2 with one line on a bad one), then execs granian
# as PID 1's replacement: SIGTERM from `docker stop` reaches it directly and in-flight calls
# finish (CDS_SHUTDOWN_TIMEOUT, default 30 s; keep docker's stop timeout above it:
# `docker stop -t 40`, compose `stop_grace_period`). Workers and threads: CDS_WORKERS,
# CDS_THREADS; timeouts: CDS_HEADER_TIMEOUT, CDS_BODY_TIMEOUT (README "Serving").
STOPSIGNAL SIGTERM
CMD ["cds-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
