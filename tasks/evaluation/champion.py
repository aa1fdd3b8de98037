"""Challenger vs champion (issue 19 item 2): the lineage's champion on the same test examples, its recorded
outputs, and the paired comparison of the new model (``custom``) with it.

Recorded outputs. Every evaluation stores each evaluated model's per-example outputs next to that model's
evaluation record: ``<output uri of the model's run>/evaluation/outputs/<outputs key>.json`` (the run's output uri
is ``s3://bucket/<aws.prefix>/output/<run key>/``, tasks/upload.py). The outputs key is sha256 of the test split's
sha256 and of what shapes an answer (invoke shape, max_tokens, temperature), so a file is reused only for the same
prompts asked the same way; the document repeats the test split's sha256 and is refused when it differs. The file
holds the outputs keyed by example id (the line index in test.jsonl, ``tasks.evaluate.load_examples``), successful
calls only. ``champion_outputs_for`` finds the champion's: when the data did not change, the champion is not
served again.

Comparison. ``compare_with_champion`` adds the champion's per-example metric columns and the paired bootstrap CI
of custom − champion per metric, over the examples where base, champion and custom all answered (the same
prompts for the three); ``champion_checks`` is the gate rule against it (``gate.champion_metrics``,
``gate.champion_min_delta``, ``gate.require_ci_above_zero_vs_champion``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from tasks.aws.s3uri import child_key, s3_uri, split_s3_uri
from tasks.config import EvaluationConfig, GateConfig
from tasks.run.types import InvokeResult

log = logging.getLogger(__name__)

OUTPUTS_VERSION = 1


class RecordedOutput(BaseModel):
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None


class RecordedOutputs(BaseModel):
    """One model's successful answers on one test split, keyed by example id (str of the line index)."""

    version: int = OUTPUTS_VERSION
    model: str = ""                       # the custom model (account id redacted)
    run_id: str | None = None             # the run whose model answered (the lineage version)
    test_sha256: str
    settings: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, RecordedOutput] = Field(default_factory=dict)

    def result(self, example_id: Any) -> InvokeResult | None:
        o = self.outputs.get(str(example_id))
        return None if o is None else InvokeResult(text=o.text, input_tokens=o.input_tokens,
                                                   output_tokens=o.output_tokens, latency_ms=o.latency_ms or 0.0)


class ChampionPlan(BaseModel):
    """What the evaluation needs to run the lineage's champion: who it is, where to call it (its production
    serving; None: not served) and its recorded outputs on this test split (None: none recorded)."""

    run_id: str
    run_key: str
    custom_model_arn: str
    target: str | None = None
    outputs_uri: str | None = None         # where its outputs on this test split are (or will be) recorded
    recorded: RecordedOutputs | None = None


def settings_of(eval_cfg: EvaluationConfig, invoke_shape: str) -> dict[str, Any]:
    """What shapes an answer besides the prompt (the same for the three targets of one evaluation)."""
    return {"invoke_shape": invoke_shape, "max_tokens": eval_cfg.max_tokens, "temperature": eval_cfg.temperature}


def outputs_key(test_sha256: str, settings: dict[str, Any]) -> str:
    blob = json.dumps({"test": test_sha256, "settings": settings, "v": OUTPUTS_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sibling_output_uri(output_uri: str, run_key: str) -> str:
    """The output uri of another run of the same bucket and prefix: ``…/output/<run key>/``."""
    parent = output_uri.rstrip("/").rsplit("/", 1)[0]
    return f"{parent}/{run_key}/"


def outputs_uri(output_uri: str, test_sha256: str, settings: dict[str, Any]) -> str:
    """Where a model's outputs on a test split are recorded: next to its run's evaluation records."""
    bucket, prefix = split_s3_uri(output_uri)
    return s3_uri(bucket, child_key(prefix, f"evaluation/outputs/{outputs_key(test_sha256, settings)}.json"))


def outputs_from_table(df: pd.DataFrame, target: str, *, test_sha256: str, settings: dict[str, Any],
                       model: str = "", run_id: str | None = None) -> RecordedOutputs:
    """The successful answers of ``target`` (a column prefix: custom, champion) in a per-example table."""
    out: dict[str, RecordedOutput] = {}
    for _, r in df.iterrows():
        if r.get(f"{target}_error") is not None and not _nan(r.get(f"{target}_error")):
            continue
        text = r.get(f"{target}_output")
        if text is None or _nan(text):
            continue
        out[str(r["example_id"])] = RecordedOutput(
            text=str(text), input_tokens=_int(r.get(f"{target}_input_tokens")),
            output_tokens=_int(r.get(f"{target}_output_tokens")), latency_ms=_float(r.get(f"{target}_latency_ms")))
    from tasks.aws.redact import redact

    return RecordedOutputs(model=redact(model), run_id=run_id, test_sha256=test_sha256, settings=settings,
                           outputs=out)


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _int(x: Any) -> int | None:
    try:
        return None if x is None or _nan(x) else int(x)
    except (TypeError, ValueError):
        return None


def _float(x: Any) -> float | None:
    try:
        return None if x is None or _nan(x) else float(x)
    except (TypeError, ValueError):
        return None


def _missing(err: Exception) -> bool:
    code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket")


def load_outputs(s3: Any, uri: str, test_sha256: str) -> RecordedOutputs | None:
    """The recorded outputs at ``uri`` when they are of this test split; None when absent or of other data."""
    bucket, key = split_s3_uri(uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as err:
        if _missing(err):
            return None
        raise
    try:
        rec = RecordedOutputs.model_validate_json(body)
    except ValueError as err:
        log.warning("%s is not a recorded-outputs document (%s): not reused", uri, err)
        return None
    if rec.test_sha256 != test_sha256 or rec.version != OUTPUTS_VERSION:
        log.warning("%s holds outputs of another test split (%s): not reused", uri, rec.test_sha256[:12])
        return None
    return rec


def record_outputs(s3: Any, uri: str, outputs: RecordedOutputs) -> str:
    bucket, key = split_s3_uri(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=outputs.model_dump_json().encode(), ContentType="application/json")
    return uri


def champion_outputs_for(s3: Any, output_uri: str, test_hash: str, champion_version: Any,
                         settings: dict[str, Any]) -> RecordedOutputs | None:
    """The champion's recorded outputs on the test split of sha256 ``test_hash``, or None (then it is served).

    ``champion_version``: the registry's ``ModelVersion`` (its ``run_key`` locates its run's records);
    ``output_uri``: this run's output uri (same bucket and prefix as the champion's run)."""
    uri = outputs_uri(sibling_output_uri(output_uri, champion_version.run_key), test_hash, settings)
    return load_outputs(s3, uri, test_hash)


def plan_champion(s3: Any, registry: Any, *, output_uri: str, test_sha256: str, settings: dict[str, Any],
                  this_run_id: str | None = None) -> ChampionPlan | None:
    """The champion of ``registry`` (tasks.registry.Registry) as the evaluation runs it, or None: no champion
    (first run of a lineage), or this run is itself the champion (a rerun after promotion)."""
    ch = getattr(registry, "champion", None)
    if ch is None or ch.run_id == this_run_id:
        return None
    version = registry.version(ch.run_id)
    run_key = version.run_key if version is not None else ""
    uri = outputs_uri(sibling_output_uri(output_uri, run_key), test_sha256, settings) if run_key else None
    recorded = champion_outputs_for(s3, output_uri, test_sha256, version, settings) if run_key else None
    return ChampionPlan(run_id=ch.run_id, run_key=run_key, custom_model_arn=ch.custom_model_arn,
                        target=ch.serving_arn, outputs_uri=uri, recorded=recorded)


def champion_invoker(plan: ChampionPlan, invoke: Any) -> Any:
    """``Example -> InvokeResult`` for the champion: the recorded answer when there is one (no call), else a call
    to its production serving; without a serving, the example is an error row (said, never invented)."""

    def call(ex: Any) -> InvokeResult:
        if plan.recorded is not None:
            r = plan.recorded.result(getattr(ex, "id", None))
            if r is not None:
                return r.model_copy(update={"attempts": 0})
        if plan.target is None:
            raise ChampionUnavailable(f"champion {plan.run_id} has no production serving and no recorded output "
                                      f"for example {getattr(ex, 'id', '?')}")
        return invoke(ex)
    return call


class ChampionUnavailable(RuntimeError):
    """The champion cannot answer (no production serving, no recorded output)."""


# ---------------------------------------------------------------------------------------------
# metrics and the gate rule against the champion


def _champion_columns(df: pd.DataFrame, ok3: pd.Series, bertscore_model: str, num_layers: int | None) -> None:
    """Per-example metric columns of the champion (NaN outside ``ok3``), the way compute_metrics makes base's."""
    from tasks.evaluation.metrics import _rouge_l, bertscore, normalize_answer

    refs = df.loc[ok3, "reference"].astype(str).tolist()
    outs = df.loc[ok3, "champion_output"].astype(str).tolist()
    P, R, F = bertscore(outs, refs, model=bertscore_model, num_layers=num_layers)
    rouge = _rouge_l(refs, {"champion": outs})["champion"]
    for name, arr in (("precision", P), ("recall", R), ("f1", F)):
        df[f"champion_bertscore_{name}"] = np.nan
        df.loc[ok3, f"champion_bertscore_{name}"] = arr
    df["champion_rouge_l"] = np.nan
    df.loc[ok3, "champion_rouge_l"] = rouge
    df["champion_exact_match"] = np.nan
    df.loc[ok3, "champion_exact_match"] = [float(normalize_answer(p) == normalize_answer(r))
                                           for p, r in zip(outs, refs, strict=True)]


def compare_with_champion(df: pd.DataFrame, summary: dict[str, Any], *, label_like: bool,
                          bertscore_model: str, num_layers: int | None, n_resamples: int, seed: int,
                          confidence: float = 0.95) -> dict[str, Any]:
    """Add to ``summary`` (in place; returned): ``champion`` (its mean per metric), ``comparison_vs_champion``
    (custom − champion with its paired bootstrap CI, per metric, and base's value on the same examples),
    ``win_tie_loss_vs_champion``, ``n_scored_three``
    and the champion's latency/tokens. ``df`` already holds compute_metrics' columns for base and custom."""
    from tasks.evaluation.metrics import (
        PER_EXAMPLE_METRICS,
        _macro_f1,
        _pctl,
        normalize_answer,
        paired_bootstrap,
        paired_bootstrap_macro_f1,
        win_tie_loss,
    )

    ok3 = df["base_error"].isna() & df["custom_error"].isna() & df["champion_error"].isna()
    _champion_columns(df, ok3, bertscore_model, num_layers)
    means: dict[str, float] = {}
    comp: dict[str, dict[str, Any]] = {}
    wtl: dict[str, dict[str, Any]] = {}
    for j, met in enumerate(PER_EXAMPLE_METRICS):
        ch, cu = df.loc[ok3, f"champion_{met}"].to_numpy(float), df.loc[ok3, f"custom_{met}"].to_numpy(float)
        means[met] = float(ch.mean()) if len(ch) else float("nan")
        ci = paired_bootstrap(ch, cu, n_resamples=n_resamples, seed=seed + 200 + j, confidence=confidence)
        comp[met] = _entry(means[met], float(cu.mean()) if len(cu) else float("nan"), ci, confidence)
        ba = df.loc[ok3, f"base_{met}"].to_numpy(float)
        comp[met]["base"] = float(ba.mean()) if len(ba) else float("nan")   # base on the same examples
        wtl[met] = win_tie_loss(ch, cu)
    if label_like and ok3.any():
        ref = np.array([normalize_answer(r) for r in df.loc[ok3, "reference"]], dtype=object).astype(str)
        pch = np.array([normalize_answer(p) for p in df.loc[ok3, "champion_output"]], dtype=object).astype(str)
        pcu = np.array([normalize_answer(p) for p in df.loc[ok3, "custom_output"]], dtype=object).astype(str)
        labels = sorted(set(ref.tolist()))
        pba = np.array([normalize_answer(p) for p in df.loc[ok3, "base_output"]], dtype=object).astype(str)
        means["accuracy"] = means["exact_match"]
        comp["accuracy"] = {**comp["exact_match"]}
        wtl["accuracy"] = wtl["exact_match"]
        means["macro_f1"] = _macro_f1(ref, pch, labels)
        mf = paired_bootstrap_macro_f1(ref, pch, pcu, labels, n_resamples=n_resamples, seed=seed + 300,
                                       confidence=confidence)
        comp["macro_f1"] = _entry(means["macro_f1"], _macro_f1(ref, pcu, labels), mf, confidence)
        comp["macro_f1"]["base"] = _macro_f1(ref, pba, labels)
    good = df[df["champion_error"].isna()]
    reused = good["champion_reused"].fillna(False).astype(bool) if "champion_reused" in good else None
    served = good[~reused] if reused is not None else good
    summary.setdefault("latency", {})["champion"] = {
        "p50_ms": _pctl(served["champion_latency_ms"], 50), "p95_ms": _pctl(served["champion_latency_ms"], 95),
        "mean_ms": float(pd.to_numeric(served["champion_latency_ms"]).mean()) if len(served) else float("nan")}
    tin = pd.to_numeric(good["champion_input_tokens"], errors="coerce")
    tout = pd.to_numeric(good["champion_output_tokens"], errors="coerce")
    summary.setdefault("tokens", {})["champion"] = {
        "input_total": float(tin.sum()), "output_total": float(tout.sum()),
        "input_mean": float(tin.mean()) if tin.notna().any() else float("nan"),
        "output_mean": float(tout.mean()) if tout.notna().any() else float("nan"),
        "attempts_total": int(pd.to_numeric(df["champion_attempts"]).sum())}
    summary["champion"] = means
    summary["comparison_vs_champion"] = comp
    summary["win_tie_loss_vs_champion"] = wtl
    summary["n_scored_three"] = int(ok3.sum())
    summary["champion_reused_outputs"] = int(reused.sum()) if reused is not None else 0
    return summary


def _entry(champion: float, custom: float, ci: dict[str, float], confidence: float) -> dict[str, Any]:
    return {"champion": champion, "custom": custom, "delta": ci["mean_delta"], "ci_low": ci["ci_low"],
            "ci_high": ci["ci_high"], "n": ci["n"], "confidence": confidence}


def _clean(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def champion_rule(gate: GateConfig, confidence: float = 0.95) -> str:
    mets = gate.champion_metrics or [gate.metric]
    rule = f"custom − champion > {gate.champion_min_delta:g} on {', '.join(mets)}"
    if "judge" in mets:
        rule += " (judge: its score of custom vs champion, win − loss)"
    if gate.require_ci_above_zero_vs_champion:
        rule += f" with the {confidence:.0%} CI lower bound > 0"
    return rule


def champion_checks(gate: GateConfig, summary: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """(one check per metric: champion, custom, delta, ci, n, passed, reason; the failure reasons). ``judge``:
    the LLM judge's pairwise score of custom vs champion is the delta (no per-model value)."""
    from tasks.evaluation.judge import as_comparison, why_not_judged

    conf = float(summary.get("bootstrap", {}).get("confidence", 0.95))
    comp = summary.get("comparison_vs_champion") or {}
    checks: list[dict[str, Any]] = []
    reasons: list[str] = []
    for m in gate.champion_metrics or [gate.metric]:
        judged = m == "judge"
        c = as_comparison(summary.get("judge"), "champion") if judged else comp.get(m)
        if c is None:
            why = why_not_judged(summary.get("judge"), "champion") if judged else \
                f"metric {m!r} was not computed against the champion"
            checks.append({"metric": m, "passed": False, "reason": why})
            reasons.append(why)
            continue
        ch, cu, d = _clean(c["champion"]), _clean(c["custom"]), _clean(c["delta"])
        lo, hi, n = _clean(c.get("ci_low")), _clean(c.get("ci_high")), int(c.get("n", 0))
        what = "judge score of custom vs champion" if judged else "custom − champion"
        why: list[str] = []
        if n == 0 or d is None:
            why.append(f"{m}: " + (why_not_judged(summary.get("judge"), "champion") if judged
                                   else "no example was answered by base, champion and custom"))
        else:
            if not d > gate.champion_min_delta:
                why.append(f"{m}: {what} {d:+.4f} does not exceed champion_min_delta "
                           f"{gate.champion_min_delta:g}")
            if gate.require_ci_above_zero_vs_champion and not (lo is not None and lo > 0):
                why.append(f"{m}: {conf:.0%} CI of {what} [{_f(lo)}, {_f(hi)}] does not lie above 0 "
                           f"(n={n})")
        evidence = (f"{m}: {what} {d:+.4f}, {conf:.0%} CI [{_f(lo)}, {_f(hi)}], n={n}" if judged else
                    f"{m}: custom {_f(cu)} vs champion {_f(ch)}: delta {d:+.4f}, {conf:.0%} CI "
                    f"[{_f(lo)}, {_f(hi)}], n={n}") if d is not None else ""
        checks.append({"metric": m, "champion": ch, "custom": cu, "delta": d,
                       "ci": [lo, hi] if lo is not None and hi is not None else None, "n": n, "passed": not why,
                       "reason": "; ".join(why) if why else evidence})
        reasons.extend(why)
    return checks, reasons


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
