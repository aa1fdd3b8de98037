# bedrock-forge image: the Prefect worker, the Prefect server and the local Bedrock emulator
# (docker-compose.yml runs each from this one image, so their versions always match).
#
#   docker build -t bedrock-forge .                                    # from the official Python image (users)
#   docker build -t bedrock-forge --build-arg BASE_IMAGE=forge-debian:bookworm --network host .
#                                   # from a Debian root imported locally (docker/base-image.sh; no registry needed)
#
# Both bases get the project the way `make setup` installs it: a venv, CPU torch FIRST (so bert-score and
# sentence-transformers find torch satisfied and never pull the multi-GB CUDA build), then the project.
# BASE_IMAGE is any Debian-family image: with no python3 on it (a debootstrap minbase root), Debian's python3
# (3.11 on bookworm) is installed from its apt sources.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Where the CPU torch wheel comes from: PyTorch's public CPU index, unless a torch wheel was put in docker/wheels/
# (make compose-test copies the one pip's find-links holds: a machine that reaches PyPI but not PyTorch's index).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Debian's python3 + venv (+ CA certificates for PyPI over TLS) when the base has no Python of its own.
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
             python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv \
 && pip install -q --upgrade pip

WORKDIR /app

# CPU-only torch first (same rule as `make setup`).
COPY docker/wheels/ /tmp/wheels/
RUN set -e; \
    wheel=$(ls /tmp/wheels/torch-${TORCH_VERSION}*.whl 2>/dev/null | head -n 1 || true); \
    if [ -n "$wheel" ]; then pip install -q "$wheel"; \
    else pip install -q torch==${TORCH_VERSION} --index-url "${TORCH_INDEX_URL}"; fi; \
    rm -rf /tmp/wheels

# Dependencies before the code, so editing code does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p forge tasks flows emulator \
 && touch forge/__init__.py tasks/__init__.py flows/__init__.py emulator/__init__.py \
 && pip install -q -e . \
 && python -c "import torch, sys; v = torch.__version__; sys.exit(0 if '+cpu' in v or not torch.cuda.is_available() else f'non-CPU torch {v}')"

# The project. Deployments' entry points are relative to /app (the worker's working directory).
COPY forge ./forge
COPY tasks ./tasks
COPY flows ./flows
COPY emulator ./emulator
COPY deployments ./deployments
COPY examples ./examples
# PID 1 of every container (docker/forge-init: forwards SIGTERM, reaps orphans, and lets a stopped worker's
# flow-run watchdogs finish deleting serving resources before the container exits) and the test deploy helper.
COPY docker/forge-init docker/deploy-with-sweep /usr/local/bin/
# Non-root; /app writable for runs/ and the task cache (.forge-cache/) that flow runs create there.
RUN chmod 0755 /usr/local/bin/forge-init /usr/local/bin/deploy-with-sweep \
 && pip install -q --no-deps -e . \
 && useradd --create-home --uid 10001 forge && mkdir -p /app/runs /data/emulator \
 && chown -R forge /app /data
USER forge

ENTRYPOINT ["forge-init"]
# Default: a process worker on the forge pool (docker-compose overrides per service).
CMD ["prefect", "worker", "start", "--pool", "forge-process", "--type", "process"]
