"""Driving the real pipeline from outside, the way a user or on-call would: standard AWS settings in
the environment, the ``customize-model`` flow in this process, its run folder read back afterwards.

Nothing here is pipeline code. ``scenarios.faults`` builds its scenarios from these pieces.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasks.aws.s3uri import split_s3_uri

REPO = Path(__file__).resolve().parents[1]
DUMMY_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class WorkerLost(BaseException):  # noqa: N818 - named for what it simulates
    """Not an Exception: Prefect treats it as a crash (the worker process died under the run)."""


# --------------------------------------------------------------------------------------------- config
def small_config(name: str, **over: Any) -> dict:
    """A small, fast run on the BANKING77 slice. The gate always passes: gate verdicts are not what the
    matrix tests (10 test examples are too few for a meaningful one)."""
    cfg: dict[str, Any] = {
        "name": name,
        "base_model": "amazon.nova-micro-v1:0:128k",
        "customization_type": "FINE_TUNING",
        "preset": "quick",
        "data": {
            "source": str(REPO / "examples/data/banking77-small.csv"),
            "columns": {"prompt": "text", "completion": "category"},
            "max_records": 120,
            "split": {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 7},
        },
        "serving": {"mode": "provisioned", "model_units": 1, "max_hours": 1},
        "evaluation": {"max_examples": 10, "concurrency": 4, "max_tokens": 16, "bootstrap_samples": 100},
        "gate": {"metric": "rouge_l", "min_delta": -1.0, "require_ci_above_zero": False},
        "job": {"poll_max_interval_seconds": 1},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


# --------------------------------------------------------------------------------------------- plumbing
@contextmanager
def aws_env(url: str) -> Iterator[None]:
    """Point boto3 at ``url`` the way a user would (env only); restore the environment afterwards."""
    saved = dict(os.environ)
    os.environ.update(DUMMY_ENV)
    os.environ["AWS_ENDPOINT_URL"] = url
    for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(k, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def patched(obj: Any, attr: str, value: Any) -> Iterator[None]:
    """``obj.attr = value`` for the block (a fault planted in a stage), then the original back."""
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)


def pipeline_config(d: dict):
    """The config dict as the flow's typed parameter."""
    from tasks.config import PipelineConfig

    return PipelineConfig.model_validate(d)


def run_flow(config: dict | None, runs: Path, **kw: Any):
    """The flow in this process; returns its final Prefect state (never raises the run's error)."""
    from flows.customize import customize_model

    cfg = pipeline_config(config) if config else None
    try:
        return customize_model(config=cfg, runs_dir=str(runs), return_state=True, **kw)
    except WorkerLost as err:   # a crash re-raises out of an in-process run
        return err


def manifests(runs: Path) -> list[dict]:
    """Every run's manifest under ``runs``, oldest first."""
    paths = sorted(runs.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in paths]


def manifest_of(runs: Path, run_id: str | None = None) -> dict:
    """The manifest of ``run_id``, or of the newest run."""
    if run_id:
        return json.loads((runs / run_id / "manifest.json").read_text())
    ms = manifests(runs)
    assert ms, f"no manifest under {runs}"
    return ms[-1]


def failure_text(m: dict) -> str:
    """What a person reads: the run's error plus every failed step's error."""
    parts = [m.get("error") or ""]
    parts += [f"{s}: {v['error']}" for s, v in (m.get("steps") or {}).items() if v.get("error")]
    return " | ".join(p for p in parts if p)


def first_unfinished(m: dict) -> str | None:
    """The step ``forge rerun RUN_ID`` resumes from: the first not completed or skipped (None: all done)."""
    from tasks.run.manifest import STEPS

    for s in STEPS:
        if (m.get("steps", {}).get(s) or {}).get("status") not in ("completed", "skipped"):
            return s
    return None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_intact(runs: Path) -> tuple[bool, str]:
    """Every uploaded split in S3 has the sha256 of the prepared file it came from (every run's manifest)."""
    import boto3

    s3 = boto3.client("s3")
    checked = 0
    for m in manifests(runs):
        data = (m.get("resources") or {}).get("data") or {}
        for split in ("train", "validation", "test"):
            uri = data.get(split)
            if not uri:
                continue
            bucket, key = split_s3_uri(uri)
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            local = runs / m["run_id"] / "prepared" / f"{split}.jsonl"
            want = m["data"]["sha256"][split]
            if _sha(body) != want or (local.exists() and _sha(local.read_bytes()) != want):
                return False, f"{uri}: sha256 {_sha(body)[:12]} != prepared {want[:12]}"
            checked += 1
    return checked > 0, f"{checked} object(s) checked" if checked else "no uploaded data recorded"


def wait_for(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``pred`` until it returns something truthy (returned); TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def api_url() -> str | None:
    """The Prefect API this process talks to (a subprocess run must use the same one), if any."""
    try:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value()
    except Exception:  # noqa: BLE001
        return None
