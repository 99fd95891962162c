# perfics proxy on the bundled CPU models, as a non-root user on a root filesystem that may be
# read-only: everything it writes goes to the declared volumes (docs/deploy.md).
#   Build: docker build -t perfics .        (podman: podman build --format docker -t perfics .,
#          or the HEALTHCHECK is dropped; PYTHON_IMAGE names another base, e.g. a mirror's)
#   Run:   docker run --read-only -p 8000:8000 perfics
#          (mount another policy and set PERFICS_POLICY to route to vLLM or other upstreams)
# `make image-test` builds this file and starts the image the way its configuration says.
ARG PYTHON_IMAGE=python:3.11-slim

# The runtime dependencies, read from pyproject.toml: copied by content into the build
# stage, so llama.cpp's compile is redone only when they change, not for every edit of
# perfics' code or of pyproject.toml's other sections.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["llamacpp"]))' > requirements.txt

FROM ${PYTHON_IMAGE} AS build
# llama-cpp-python compiles llama.cpp from source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# llama.cpp for any x86-64 CPU with AVX2, not only the build machine's: its default,
# -march=native, emits the AVX-512 and AMX instructions of a recent Xeon, which another node
# (or a hypervisor that lists AMX but refuses it) kills with SIGILL at the first decode.
# Without the multimodal library, which perfics never uses (a shorter compile).
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
COPY --from=requirements /src/requirements.txt ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY routing ./routing
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE}
# The user's home is its data volume: whatever a library writes under ~ lands there too.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --home-dir /var/lib/perfics --no-create-home \
        --shell /usr/sbin/nologin perfics \
    && install -d -o perfics -g perfics -m 0750 /var/lib/perfics
COPY --from=build /opt/venv /opt/venv
COPY policies /app/policies
# The store's default, sqlite:///.perfics/perfics.db, is relative to the working directory,
# so the working directory is the data volume; a policy's server.database or
# PERFICS_DATABASE_URL (a PostgreSQL URL for several replicas) still chooses another.
WORKDIR /var/lib/perfics
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PERFICS_POLICY=/app/policies/default.yaml \
    PERFICS_HOST=0.0.0.0 \
    PERFICS_PORT=8000 \
    PERFICS_CACHE_DIR=/var/lib/perfics/cache
# /var/lib/perfics: the SQLite store and the assembled Gemma GGUF. /tmp: temporary files
# (Prometheus' multiprocess directory with --workers).
VOLUME ["/var/lib/perfics", "/tmp"]
USER 10001:10001
EXPOSE 8000
# On the port the server listens on, also when PERFICS_PORT moves it.
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS \"http://127.0.0.1:${PERFICS_PORT:-8000}/healthz\" || exit 1"]
CMD ["perfics", "serve"]
