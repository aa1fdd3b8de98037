"""Hyperparameter sweep: one child run of ``customize_model`` per preset / grid point, at most
``max_parallel_jobs`` in flight, best child picked by the gate metric, a markdown table as artifact.

- Bedrock runs a limited number of customization jobs at once per account (the emulator models 2;
  docs/bedrock-facts.md §5 lists the quota as unconfirmed), so children run in a
  thread pool of ``max_parallel_jobs`` workers: a child holds its slot from start to teardown, so at
  most that many jobs (and provisioned throughputs) exist at any time.
- Every child is a full customize run (its own name suffix → its own run key, resources, manifest),
  and tears down its own serving resources in its ``finally`` (docs/design.md §3). A failed child does not
  stop the others; its row says why.
- Variants are built and range-checked before any child starts: a bad preset or an out-of-range
  grid value fails the sweep before anything is spent.
"""

from __future__ import annotations

import contextvars
import itertools
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from tasks.catalog import load_catalog, resolve_hyperparameters
from tasks.config import ConfigError, PipelineConfig, parse_config
from tasks.evaluation.metrics import as_number
from tasks.run.manifest import new_run_id

T = TypeVar("T")
R = TypeVar("R")


class Variant(BaseModel):
    label: str                                   # e.g. "quick", "balanced g2"
    preset: str | None
    overrides: dict[str, Any] = Field(default_factory=dict)
    config: PipelineConfig


class ChildResult(BaseModel):
    label: str
    name: str
    run_id: str
    preset: str | None
    overrides: dict[str, Any] = Field(default_factory=dict)
    status: str                                  # succeeded | gate_failed | failed
    metric: str
    base: float | None = None
    custom: float | None = None
    delta: float | None = None
    gate_passed: bool | None = None
    error: str | None = None
    manifest: str | None = None


# ---------------------------------------------------------------------------------------------
# plain logic
# ---------------------------------------------------------------------------------------------
def child_name(base: str, suffix: str) -> str:
    """``base-suffix`` cut to the 32-character name rule of PipelineConfig.name."""
    suffix = "".join(c if c.isalnum() else "-" for c in suffix.lower()).strip("-")
    keep = 32 - len(suffix) - 1
    return f"{base[:keep].rstrip('-')}-{suffix}"


def grid_points(grid: dict[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Cartesian product of the grid, in the order given; ``[{}]`` for no grid."""
    if not grid:
        return [{}]
    empty = [k for k, vals in grid.items() if not vals]
    if empty:
        raise ValueError(f"grid: {', '.join(empty)} has no values (give at least one)")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def expand_variants(config: PipelineConfig, presets: list[str] | None = None,
                    grid: dict[str, Sequence[Any]] | None = None) -> list[Variant]:
    """One variant per (preset × grid point), each validated and range-checked against the catalog.

    Raises ConfigError naming the variant and the problem (unknown preset, value out of range).
    """
    points = grid_points(grid)
    preset_list: list[str | None] = list(presets) if presets else [config.preset]
    if len(set(preset_list)) != len(preset_list):
        raise ConfigError([f"presets: listed twice: {sorted({p for p in preset_list if preset_list.count(p) > 1})}"])
    spec = load_catalog().spec(config.base_model, config.customization_type)
    base = config.model_dump(mode="json")
    variants: list[Variant] = []
    for preset, (i, point) in itertools.product(preset_list, enumerate(points, start=1)):
        parts = [preset or "default"] + ([f"g{i}"] if grid else [])
        label = " ".join(parts)
        overrides = {**config.hyperparameters, **point}
        raw = {**base, "name": child_name(config.name, "-".join(parts)), "preset": preset,
               "hyperparameters": overrides}
        try:
            child = parse_config(raw, source=f"sweep variant {label!r}")
            resolve_hyperparameters(spec, preset, overrides)
        except ValueError as err:
            problems = err.problems if isinstance(err, ConfigError) else [f"sweep variant {label!r}: {err}"]
            raise ConfigError(problems) from None
        variants.append(Variant(label=label, preset=preset, overrides=point, config=child))
    names = [v.config.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError([f"sweep: child names collide after shortening to 32 characters: {names}; "
                           "use a shorter config name"])
    return variants


def run_bounded(items: Sequence[T], fn: Callable[[T], R], max_parallel: int) -> list[R]:
    """``fn`` over ``items`` with at most ``max_parallel`` calls in flight; results in input order.

    Each call runs in a copy of the caller's context (so Prefect sees child flows as subflows of the
    calling flow run). ``fn`` should not raise; if it does, the first error is re-raised after every
    started call has finished.
    """
    if max_parallel < 1:
        raise ValueError(f"max_parallel_jobs must be at least 1, got {max_parallel}")
    with ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="sweep-child") as pool:
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        return [f.result() for f in futures]


def result_from_manifest(variant: Variant, run_id: str, manifest_path: Path, error: str | None) -> ChildResult:
    """What the child's manifest says about its gate metric (the manifest is the record, not the state)."""
    metric = variant.config.gate.metric
    data: dict[str, Any] = {}
    if manifest_path.exists():
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    gate = data.get("gate") or {}
    custom = gate.get("custom")
    if custom is None:
        custom = ((data.get("metrics") or {}).get("custom") or {}).get(metric)
    status = data.get("status") or "failed"
    if status == "running":  # the child died without finishing its manifest
        status = "failed"
    return ChildResult(
        label=variant.label, name=variant.config.name, run_id=run_id, preset=variant.preset,
        overrides=variant.overrides, status=status, metric=metric, base=_num(gate.get("base")),
        custom=_num(custom), delta=_num(gate.get("delta")), gate_passed=gate.get("passed"),
        error=(data.get("error") or error) if status == "failed" else None,
        manifest=str(manifest_path) if manifest_path.exists() else None,
    )


def _num(x: Any) -> float | None:
    """A number, or None for anything else and NaN (tasks/evaluation/metrics.py as_number)."""
    return as_number(x)


def _rank_value(r: ChildResult) -> float | None:
    """The custom model's value of the gate metric; for ``judge`` (pairwise: no per-model value) its score
    against the same base model, which ranks the children as well."""
    return r.delta if r.metric == "judge" else r.custom


def pick_best(results: Sequence[ChildResult]) -> ChildResult | None:
    """Highest custom value of the gate metric (judge: the highest score vs base), children that passed the gate
    first; ties: first listed."""
    scored = [r for r in results if _rank_value(r) is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: (r.gate_passed is True, _rank_value(r)))  # max keeps the first on ties


def results_markdown(results: Sequence[ChildResult], best: ChildResult | None) -> str:
    metric = results[0].metric if results else "metric"

    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.4f}"

    lines = [f"# Hyperparameter sweep ({len(results)} runs)", "",
             f"| | variant | hyperparameters | status | base {metric} | custom {metric} | delta | gate | run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        mark = "**best**" if best is not None and r.run_id == best.run_id else ""
        hp = ", ".join(f"{k}={v}" for k, v in r.overrides.items()) or "—"
        gate = {True: "pass", False: "fail", None: "—"}[r.gate_passed]
        status = r.status + (f": {r.error[:80]}" if r.error else "")
        lines.append(f"| {mark} | {r.preset or 'default'} | {hp} | {status} | {f(r.base)} | {f(r.custom)} | "
                     f"{f(r.delta)} | {gate} | `{r.run_id}` |")
    lines.append("")
    if best is None:
        lines.append("No run produced a value of the gate metric: nothing to recommend.")
    elif best.gate_passed:
        lines.append(f"Best: **{best.label}** (`{best.run_id}`), custom {metric} {f(best.custom)}.")
    else:
        lines.append(f"No run passed the gate; highest custom {metric}: **{best.label}** (`{best.run_id}`), "
                     f"{f(best.custom)}.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# flow
# ---------------------------------------------------------------------------------------------
def _child_flow():
    """The child flow (imported lazily; tests replace this with a stand-in)."""
    from flows.customize import customize_model

    return customize_model


def run_child(variant: Variant, runs_dir: str) -> ChildResult:
    """Run one variant as a customize_model subflow; never raises (the row records the failure)."""
    run_id = new_run_id(variant.config.name)
    error = None
    try:
        state = _child_flow()(config=variant.config, run_id=run_id, runs_dir=runs_dir, return_state=True)
        if not state.is_completed():
            error = state.message or state.name
    except Exception as err:  # noqa: BLE001 - one child's crash must not stop its siblings
        error = f"{type(err).__name__}: {err}"
    return result_from_manifest(variant, run_id, Path(runs_dir) / run_id / "manifest.json", error)


@flow(name="sweep-hyperparameters", log_prints=True)
def sweep_hyperparameters(
    config: PipelineConfig,
    presets: list[str] | None = None,
    grid: dict[str, list] | None = None,
    max_parallel_jobs: int = 2,
    runs_dir: str = "runs",
) -> dict:
    """Train one model per preset / grid point, evaluate each, pick the best by the gate metric.

    Args:
        config: The base run configuration; each child copies it with its own name suffix.
        presets: Presets to compare (quick, balanced, quality, cpt); default: the config's preset.
        grid: Hyperparameter grid, e.g. {"epochCount": [1, 2], "learningRateMultiplier": [0.5, 1.0]};
            every combination is a child run (times each preset).
        max_parallel_jobs: Children (= training jobs) in flight at once; Bedrock's concurrent-training
            quota is small (2 by default in the emulator), keep it at 2 unless your quota is higher.
        runs_dir: Folder for the children's run folders and manifests.
    """
    from prefect.artifacts import create_markdown_artifact

    log = get_run_logger()
    variants = expand_variants(config, presets, grid)
    log.info("sweep: %d child runs, at most %d in flight: %s", len(variants), max_parallel_jobs,
             ", ".join(v.config.name for v in variants))
    results = run_bounded(variants, lambda v: run_child(v, runs_dir), max_parallel_jobs)
    best = pick_best(results)
    table = results_markdown(results, best)
    best_label = best.label if best else "none"
    create_markdown_artifact(key="hparam-sweep", markdown=table,
                             description=f"{len(results)} runs of {config.name}; best: {best_label}")
    log.info("sweep done; best: %s", best.label if best else "none")
    return {"best": best.model_dump(mode="json") if best else None,
            "results": [r.model_dump(mode="json") for r in results], "table": table}
