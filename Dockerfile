# bedrock-forge image: the Prefect worker, the Prefect server and the local Bedrock emulator
# (docker-compose.yml runs each from this one image, so their versions always match).
#   docker build -t bedrock-forge .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /app

# CPU-only torch FIRST, from PyTorch's public CPU wheel index: bert-score and sentence-transformers
# then find torch satisfied and never pull the multi-GB CUDA build (same rule as `make setup`).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Dependencies before the code, so editing code does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p forge tasks flows emulator \
 && touch forge/__init__.py tasks/__init__.py flows/__init__.py emulator/__init__.py \
 && pip install -e . \
 && python -c "import torch, sys; sys.exit(0 if not torch.cuda.is_available() else 'CUDA torch pulled in')"

# The project. Deployments' entry points are relative to /app (the worker's working directory).
COPY forge ./forge
COPY tasks ./tasks
COPY flows ./flows
COPY emulator ./emulator
COPY deployments ./deployments
COPY examples ./examples
# Non-root; /app writable for runs/ and the task cache (.forge-cache/) that flow runs create there.
RUN pip install --no-deps -e . && useradd --create-home --uid 10001 forge && mkdir -p /app/runs /data/emulator \
 && chown -R forge /app /data
USER forge

# Default: a process worker on the forge pool (docker-compose overrides per service).
CMD ["prefect", "worker", "start", "--pool", "forge-process", "--type", "process"]
