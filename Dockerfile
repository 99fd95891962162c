# perfics proxy on the bundled CPU model. Build: docker build -t perfics .
# Run:   docker run -p 8000:8000 perfics   (mount another policy at /app/policy.yaml and set
#        PERFICS_POLICY=/app/policy.yaml to route to vLLM or other upstreams)
FROM python:3.11-slim AS build
# llama-cpp-python compiles llama.cpp from source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY routing ./routing
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[llamacpp]"

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 perfics
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY policies ./policies
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PERFICS_POLICY=/app/policies/default.yaml \
    PERFICS_HOST=0.0.0.0 \
    PERFICS_PORT=8000 \
    PERFICS_CACHE_DIR=/home/perfics/.cache/perfics
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8000/healthz"]
CMD ["perfics", "serve"]
