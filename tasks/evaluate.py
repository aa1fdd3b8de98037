"""Evaluation stage: base vs custom model over the test split, concurrently, honestly.

- ``run_comparison``: both models over every example through a thread pool per model, each model
  behind its own token-bucket rate limiter; transient/throttled calls retried with exponential
  backoff and full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015); a call
  that finally fails becomes an error row: no example is ever dropped.
- ``check_error_share``: the run fails (``EvaluationError`` with counts) when more calls failed than
  ``evaluation.max_error_share`` allows — unlike tolerating 100 % failed calls silently.
- ``compute_metrics`` / ``paired_bootstrap`` / ``training_summary`` live in ``tasks.evaluation.metrics``.
- ``apply_gate``: the quality gate on one metric, with its bootstrap CI.
- ``collect_outputs`` (needs the serving resource) then ``score_outputs`` (after teardown): the two phases
  the flows call through ``collect_outputs_task`` / ``score_outputs_task``; ``evaluate_endpoints`` runs both.
- Challenger vs champion (issue 19): ``run_targets`` runs N named targets on the same examples; with
  ``collect_outputs(champion=champion_plan(...))`` the lineage's champion is the third (its recorded outputs
  reused, else its production serving called); ``score_outputs`` then compares custom with it and ``apply_gate``
  adds the rule against it. ``record_run_outputs`` stores the per-example outputs a later evaluation reuses
  (tasks/evaluation/champion.py).
- LLM-as-judge: ``judge_outputs`` (after teardown: the judge is a base model) — tasks/evaluation/judge.py.

Nothing here needs AWS to be testable: invokers are plain callables ``Example -> InvokeResult``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks.aws.redact import redact_text
from tasks.aws.retry import aws_task
from tasks.aws.s3uri import child_key, s3_uri, split_s3_uri
from tasks.config import EvaluationConfig, GateConfig
from tasks.data.formats import Example, from_record  # noqa: F401 (Example re-exported)
from tasks.evaluation.champion import ChampionPlan
from tasks.evaluation.metrics import compute_metrics, paired_bootstrap, training_summary  # noqa: F401 (re-exported)
from tasks.run import stop
from tasks.run.types import InvokeResult, TrainingResult

log = logging.getLogger(__name__)


class EvaluationError(RuntimeError):
    """Evaluation could not produce an honest result (too many failed calls, no test data, ...)."""


class GateVerdict(BaseModel):
    rule: str
    metric: str
    base: float | None = None
    custom: float | None = None
    delta: float | None = None
    ci: tuple[float, float] | None = None
    confidence: float = 0.95
    n: int = 0
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    # against the lineage's champion (issue 19); None: no champion (first run of a lineage), gated against base
    champion: str | None = None                   # the champion's run id
    champion_rule: str | None = None
    vs_champion: list[dict[str, Any]] = Field(default_factory=list)   # one check per metric, with its evidence


class EvaluationResult(BaseModel):
    n_examples: int
    n_scored: int
    errors: dict[str, int]
    # base, custom, comparison, win_tie_loss, per_class, latency, tokens, bertscore, training; with a champion:
    # champion_run_id, champion, comparison_vs_champion, win_tie_loss_vs_champion, n_scored_three,
    # champion_reused_outputs (or champion_skipped); with the judge: judge
    metrics: dict[str, Any]
    gate: GateVerdict
    files: dict[str, str] = Field(default_factory=dict)
    base_target: str = ""
    custom_target: str = ""
    champion_target: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# concurrency, rate limit, retries


class TokenBucket:
    """Thread-safe token bucket: ``rate`` tokens/s, at most ``capacity`` banked (burst)."""

    def __init__(self, rate: float, capacity: float = 1.0):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.capacity = max(1.0, float(capacity))
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) / self.rate
            time.sleep(wait)


class _NoLimit:
    def acquire(self) -> None:
        return None


def _call_with_retries(invoke: Callable[[Any], InvokeResult], ex: Any, limiter: Any, retries: int,
                       is_retryable: Callable[[BaseException], bool], backoff_base: float,
                       backoff_cap: float) -> InvokeResult:
    attempts = 0
    while True:
        attempts += 1
        limiter.acquire()
        t0 = time.perf_counter()
        try:
            res = invoke(ex)
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed silently
            if attempts <= retries and is_retryable(exc):
                # full jitter: sleep U(0, min(cap, base * 2^(attempt-1)))
                time.sleep(random.uniform(0, min(backoff_cap, backoff_base * 2 ** (attempts - 1))))
                continue
            kind = "retries exhausted" if is_retryable(exc) else "not retryable"
            # the message goes into examples.csv, the report and its S3 copies: no account id (an AccessDenied
            # names the caller's ARN)
            return InvokeResult(error=redact_text(f"{type(exc).__name__}: {exc} ({kind} after {attempts} "
                                                  "attempt(s))"),
                                attempts=attempts, latency_ms=(time.perf_counter() - t0) * 1000)
        if not isinstance(res, InvokeResult):
            res = InvokeResult(text=str(res))
        upd: dict[str, Any] = {"attempts": attempts}
        if not res.latency_ms:
            upd["latency_ms"] = (time.perf_counter() - t0) * 1000
        return res.model_copy(update=upd)


def run_comparison(examples: Sequence[Any], invoke_base: Callable[[Any], InvokeResult],
                   invoke_custom: Callable[[Any], InvokeResult], *, concurrency: int,
                   requests_per_second: float | None, retries: int,
                   is_retryable: Callable[[BaseException], bool],
                   backoff_base: float = 0.25, backoff_cap: float = 20.0,
                   on_progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Both models over every example; one row per example, failed calls kept as error rows.

    ``concurrency`` in-flight calls *per model* (two pools: base and custom serve from separate
    capacity); ``requests_per_second`` is a per-model cap (one token bucket per model, shared by
    its workers; retries pay for a token too). ``run_targets`` with the targets base and custom.
    """
    return run_targets(examples, {"base": invoke_base, "custom": invoke_custom}, concurrency=concurrency,
                       requests_per_second=requests_per_second, retries=retries, is_retryable=is_retryable,
                       backoff_base=backoff_base, backoff_cap=backoff_cap, on_progress=on_progress)


def run_targets(examples: Sequence[Any], invokers: dict[str, Callable[[Any], InvokeResult]], *, concurrency: int,
                requests_per_second: float | None, retries: int, is_retryable: Callable[[BaseException], bool],
                backoff_base: float = 0.25, backoff_cap: float = 20.0,
                on_progress: Callable[[int, int], None] | None = None,
                per_target_concurrency: dict[str, int] | None = None) -> pd.DataFrame:
    """N named targets (e.g. base, custom, champion) over the SAME examples (paired: one row per example, the
    same prompt for every target); per target a thread pool of ``concurrency`` and its own rate limiter. Columns
    per target ``<name>_output``, ``_latency_ms``, ``_input_tokens``, ``_output_tokens``, ``_attempts``,
    ``_error``, in the order of ``invokers``. ``per_target_concurrency`` lowers the pool of some targets (the
    champion's production serving)."""
    n = len(examples)
    names = list(invokers)
    results: dict[str, list[InvokeResult | None]] = {m: [None] * n for m in names}
    limiters = {m: (TokenBucket(requests_per_second) if requests_per_second else _NoLimit()) for m in names}
    done = [0]
    lock = threading.Lock()

    def work(model: str, i: int) -> None:
        try:
            r = _call_with_retries(invokers[model], examples[i], limiters[model], retries, is_retryable,
                                   backoff_base, backoff_cap)
        except BaseException as exc:  # a bug in the limiter/classifier must still leave a row
            r = InvokeResult(error=redact_text(f"{type(exc).__name__}: {exc}"))
        results[model][i] = r
        if on_progress:
            with lock:
                done[0] += 1
                on_progress(done[0], len(names) * n)

    t0 = time.perf_counter()
    per = per_target_concurrency or {}
    pools = {m: ThreadPoolExecutor(max(1, int(min(concurrency, per.get(m, concurrency)))),
                                   thread_name_prefix=f"eval-{m}") for m in names}
    try:
        futs = [pools[m].submit(work, m, i) for i in range(n) for m in names]
        _wait_all(futs, tuple(pools.values()))
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True)
    wall = time.perf_counter() - t0
    df = pd.DataFrame([_comparison_row(i, ex, results) for i, ex in enumerate(examples)])
    df.attrs["wall_seconds"] = wall
    return df


def _comparison_row(i: int, ex: Any, results: dict[str, list[InvokeResult | None]]) -> dict[str, Any]:
    """One example's row: the example, then per model its output (None on error), latency, tokens, attempts."""
    row: dict[str, Any] = {
        "example_id": getattr(ex, "id", None) if getattr(ex, "id", None) is not None else i,
        "system": getattr(ex, "system", None),
        "prompt": ex.prompt,
        "reference": ex.completion,
    }
    for m in results:
        r = results[m][i] or InvokeResult(error="no result recorded")
        row[f"{m}_output"] = r.text if r.error is None else None
        row[f"{m}_latency_ms"] = r.latency_ms
        row[f"{m}_input_tokens"] = r.input_tokens
        row[f"{m}_output_tokens"] = r.output_tokens
        row[f"{m}_attempts"] = r.attempts
        row[f"{m}_error"] = r.error
    return row


def targets_of(df: pd.DataFrame) -> list[str]:
    """The targets in a per-example table (base, custom, then champion when it was evaluated)."""
    return [c.removesuffix("_error") for c in df.columns if c.endswith("_error")]


def error_counts(df: pd.DataFrame) -> dict[str, int]:
    """Failed calls per target, their sum and the calls made. Champion outputs reused from a recorded evaluation
    (``champion_reused``) are not calls."""
    names = targets_of(df)
    out: dict[str, int] = {m: int(df[f"{m}_error"].notna().sum()) for m in names}
    reused = int(df["champion_reused"].fillna(False).astype(bool).sum()) if "champion_reused" in df else 0
    any_err = pd.Series(False, index=df.index)
    for m in names:
        any_err |= df[f"{m}_error"].notna()
    out.update(calls=sum(out[m] for m in names), total_calls=len(names) * len(df) - reused,
               examples_with_error=int(any_err.sum()))
    return out


def check_error_share(df: pd.DataFrame, max_error_share: float) -> dict[str, int]:
    """Raise ``EvaluationError`` when failed calls / all calls exceeds ``max_error_share``."""
    e = error_counts(df)
    if e["total_calls"] == 0:
        raise EvaluationError("evaluation had no examples to run")
    share = e["calls"] / e["total_calls"]
    if share > max_error_share:
        first = [x for m in targets_of(df) for x in df[f"{m}_error"].dropna().tolist()[:1]]
        per = ", ".join(f"{m} {e[m]}" for m in targets_of(df))
        raise EvaluationError(
            f"{e['calls']} of {e['total_calls']} model calls failed ({share:.1%}; {per}, "
            f"over {len(df)} examples) — above evaluation.max_error_share="
            f"{max_error_share:g}. First errors: {' | '.join(map(str, first))}")
    return e


# ---------------------------------------------------------------------------------------------
# gate


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def apply_gate(gate: GateConfig, summary: dict[str, Any]) -> GateVerdict:
    """custom − base on ``gate.metric`` must exceed ``min_delta``; CI lower bound > 0 if required;
    custom ≥ ``min_value`` if set. ``summary`` is ``compute_metrics``' output (with ``judge``: the LLM judge's
    summary, for ``gate.metric: judge``, where the judge's score of custom vs base — win − loss, in [-1, 1] —
    is the delta: a pairwise judge has no per-model value)."""
    from tasks.evaluation.judge import as_comparison, why_not_judged

    m = gate.metric
    conf = float(summary.get("bootstrap", {}).get("confidence", 0.95))
    judged = m == "judge"
    parts = [f"judge score of custom vs base (win − loss) > {gate.min_delta:g}" if judged
             else f"custom {m} − base {m} > {gate.min_delta:g}"]
    if gate.require_ci_above_zero:
        parts.append(f"{conf:.0%} CI lower bound > 0")
    if gate.min_value is not None:
        parts.append(f"custom {m} ≥ {gate.min_value:g}")
    rule = " and ".join(parts)
    comp = as_comparison(summary.get("judge"), "base") if judged else summary.get("comparison", {}).get(m)
    if comp is None:
        why = (why_not_judged(summary.get("judge"), "base") if judged else
               f"metric {m!r} is only computed for label-like outputs (accuracy/macro_f1) and this test set "
               "is not label-like" if m in ("accuracy", "macro_f1") else f"metric {m!r} was not computed")
        return GateVerdict(rule=rule, metric=m, passed=False, reasons=[why], confidence=conf)

    def clean(x: Any) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    base, custom, delta = clean(comp["base"]), clean(comp["custom"]), clean(comp["delta"])
    lo, hi = clean(comp.get("ci_low")), clean(comp.get("ci_high"))
    n = int(comp.get("n", 0))
    reasons: list[str] = []
    if n == 0 or delta is None:
        reasons.append(why_not_judged(summary.get("judge"), "base") if judged
                       else "no example was scored for both models")
    else:
        if not delta > gate.min_delta:
            reasons.append(f"{'judge score' if judged else 'delta'} {delta:+.4f} does not exceed min_delta "
                           f"{gate.min_delta:g}")
        if gate.require_ci_above_zero and not (lo is not None and lo > 0):
            reasons.append(f"{conf:.0%} CI [{_fmt(lo)}, {_fmt(hi)}] does not lie above 0 (n={n})")
        if gate.min_value is not None and not (custom is not None and custom >= gate.min_value):
            reasons.append(f"custom {m} {_fmt(custom)} is below the floor {gate.min_value:g}")
    champion = summary.get("champion_run_id")
    ch_rule, checks = None, []
    if champion:
        from tasks.evaluation.champion import champion_checks, champion_rule

        ch_rule = champion_rule(gate, conf)
        rule = f"{rule}; vs champion {champion}: {ch_rule}"
        if summary.get("champion_skipped"):
            reasons.append(f"champion {champion} could not be evaluated ({summary['champion_skipped']}): the new "
                           "model is not shown to beat it")
        else:
            checks, ch_reasons = champion_checks(gate, summary)
            reasons.extend(ch_reasons)
    passed = not reasons
    if passed:
        reasons.append(_judge_evidence(summary.get("judge"), "base", conf) if judged else
                       f"custom {m} {_fmt(custom)} vs base {_fmt(base)}: delta {delta:+.4f}, "
                       f"{conf:.0%} CI [{_fmt(lo)}, {_fmt(hi)}], n={n}")
        reasons.extend(f"vs champion {champion}: {c['reason']}" for c in checks)
    return GateVerdict(rule=rule, metric=m, base=base, custom=custom, delta=delta,
                       ci=(lo, hi) if lo is not None and hi is not None else None, confidence=conf, n=n,
                       passed=passed, reasons=reasons, champion=champion, champion_rule=ch_rule, vs_champion=checks)


def _judge_evidence(judge: dict[str, Any] | None, against: str, conf: float) -> str:
    p = ((judge or {}).get("pairs") or {}).get(against) or {}
    stand_in = f" ({judge['stand_in']}: not a model's judgement)" if (judge or {}).get("stand_in") else ""
    def pct(x: Any) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"

    return (f"judge {(judge or {}).get('model', '?')}{stand_in}, custom vs {against}: score "
            f"{_fmt(p.get('score'))} (win {pct(p.get('win'))} / tie {pct(p.get('tie'))} / loss "
            f"{pct(p.get('loss'))}), {conf:.0%} CI [{_fmt(p.get('ci_low'))}, {_fmt(p.get('ci_high'))}], "
            f"n={p.get('n_counted', 0)}")


# ---------------------------------------------------------------------------------------------
# orchestration


def default_is_retryable(exc: BaseException) -> bool:
    """Throttling, 5xx, timeouts, connection errors: ``tasks.aws.is_transient``."""
    from tasks.aws.errors import is_transient

    return bool(is_transient(exc))


def load_examples(test_path: str | Path, data_format: str, max_examples: int | None, seed: int = 42) -> list[Any]:
    """Read formatted test.jsonl records back into Examples (tasks.data.formats.from_record); seeded cap,
    original order kept. Each Example gets ``id`` = its line index when it allows attributes."""
    lines = [ln for ln in Path(test_path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    idx = list(range(len(lines)))
    if max_examples is not None and len(idx) > max_examples:
        idx = sorted(random.Random(seed).sample(idx, max_examples))
    out = []
    for i in idx:
        ex = from_record(data_format, json.loads(lines[i]))
        out.append(_WithId(i, ex))
    if not out:
        raise EvaluationError(f"no test examples in {test_path}")
    return out


class _WithId:
    """An Example plus its line index in test.jsonl (Example may be frozen)."""

    __slots__ = ("id", "example")

    def __init__(self, i: int, ex: Any):
        self.id, self.example = i, ex

    def __getattr__(self, k: str) -> Any:
        return getattr(self.example, k)


def _wait_all(futs: list, pools: tuple[ThreadPoolExecutor, ...], poll_s: float = 0.5) -> None:
    """Wait for every call; a stop request (``tasks/run/stop.py``) is checked every ``poll_s``. On an interrupt the
    calls not yet started are cancelled, so Ctrl-C stops the evaluation within one call's latency instead of after
    every queued call (the pools' exit waits only for the calls in flight)."""
    try:
        for f in futs:
            while True:
                stop.raise_if_requested()
                try:
                    f.result(timeout=poll_s)
                    break
                except TimeoutError:
                    continue
        stop.raise_if_requested()
    except BaseException:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        raise


def collect_outputs(runtime_client: Any, *, test_path: str | Path, data_format: str, base_target: str,
                    custom_target: str, invoke_shape: str, eval_cfg: EvaluationConfig, out_dir: str | Path,
                    seed: int = 42, is_retryable: Callable[[BaseException], bool] | None = None,
                    invoke_fn: Callable[..., InvokeResult] | None = None,
                    champion: ChampionPlan | None = None) -> pd.DataFrame:
    """Phase 1 (needs the serving resource): both targets over the test split -> per-example table.

    ``champion`` (tasks/evaluation/champion.py ``plan_champion``): the lineage's champion is a third target on
    the same examples: its recorded output where there is one (no call), else a call to its production serving.
    A champion with neither is not run (``df.attrs["champion_skipped"]`` says why; the gate then fails).

    Raises ``EvaluationError`` (after writing the per-example CSV, so the failures can be read)
    when the failed-call share exceeds ``eval_cfg.max_error_share``.
    """
    from tasks.evaluation.champion import champion_invoker
    from tasks.evaluation.invoke import AimdLimiter, invoke_text

    invoke_fn = invoke_fn or invoke_text
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    examples = load_examples(test_path, data_format, eval_cfg.max_examples, seed)
    # one in-flight limit per target, adapted to what it can serve (AIMD: halve on throttling, +1 per window of
    # successes, up to evaluation.concurrency): a PT's capacity per model unit is finite (tasks/evaluation/invoke.py)
    champion_id, champion_skipped = (champion.run_id if champion else None), None
    if champion is not None and champion.target is None and champion.recorded is None:
        champion_skipped = "it has no production serving and no recorded outputs on this test split"
        champion = None
    limiters = {t: AimdLimiter(eval_cfg.concurrency) for t in {base_target, custom_target}}
    champion_max = min(eval_cfg.concurrency, eval_cfg.champion_concurrency)
    if champion is not None and champion.target and champion.target not in limiters:
        limiters[champion.target] = AimdLimiter(champion_max)
    extra = (lambda t: {"limiter": limiters[t]}) if invoke_fn is invoke_text else (lambda t: {})

    def make(target: str) -> Callable[[Any], InvokeResult]:
        kw = extra(target)

        def call(ex: Any) -> InvokeResult:
            return invoke_fn(runtime_client, target, invoke_shape, prompt=ex.prompt, system=ex.system,
                             max_tokens=eval_cfg.max_tokens, temperature=eval_cfg.temperature, **kw)
        return call

    invokers = {"base": make(base_target), "custom": make(custom_target)}
    if champion is not None:
        invokers["champion"] = champion_invoker(champion, make(champion.target) if champion.target else None)
    df = run_targets(examples, invokers, concurrency=eval_cfg.concurrency,
                     requests_per_second=eval_cfg.requests_per_second, retries=eval_cfg.invoke_retries,
                     is_retryable=is_retryable or default_is_retryable,
                     per_target_concurrency={"champion": champion_max})
    df.attrs["targets"] = {"base": base_target, "custom": custom_target}
    if champion is not None:
        reused = df["example_id"].map(lambda i: champion.recorded is not None and str(i) in champion.recorded.outputs)
        df["champion_reused"] = reused.astype(bool)
        df.loc[df["champion_reused"], "champion_attempts"] = 0
        df.attrs["targets"]["champion"] = champion.target or f"recorded outputs of {champion.run_id}"
        df.attrs["champion"] = champion.model_dump(mode="json", exclude={"recorded"})
    elif champion_skipped:
        df.attrs["champion_skipped"] = champion_skipped
    if champion_id:
        df.attrs["champion_run_id"] = champion_id
    df.attrs["aimd"] = {t: lim.stats() for t, lim in limiters.items()}
    try:
        check_error_share(df, eval_cfg.max_error_share)
    except EvaluationError:
        df.to_csv(out / "examples.csv", index=False)
        raise
    return df


def score_outputs(df: pd.DataFrame, *, eval_cfg: EvaluationConfig, gate_cfg: GateConfig, label_like: bool,
                  out_dir: str | Path, training: TrainingResult | None = None, seed: int = 42,
                  judge: dict[str, Any] | None = None) -> EvaluationResult:
    """Phase 2 (no serving resource needed): metrics, statistics, gate, report files. With a champion column
    (``collect_outputs(champion=...)``): the comparison with the champion and the gate rule against it.
    ``judge``: the LLM judge's summary (tasks/evaluation/judge.py ``judge_table``), shown in the report and a gate
    metric when ``gate.metric`` / ``gate.champion_metrics`` name ``judge``."""
    from tasks.evaluation import report as report_mod

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = df.attrs.get("targets", {"base": "", "custom": ""})
    timings: dict[str, float] = {"invoke_seconds": df.attrs.get("wall_seconds", float("nan"))}
    t0 = time.perf_counter()
    summary = compute_metrics(df, label_like=label_like, bertscore_model=eval_cfg.bertscore_model,
                              num_layers=eval_cfg.bertscore_num_layers, n_resamples=eval_cfg.bootstrap_samples,
                              seed=seed)
    timings["metrics_seconds"] = time.perf_counter() - t0
    if training is not None:
        summary["training"] = training_summary(training.training_metrics, training.validation_metrics)
    if "champion_output" in df:
        from tasks.evaluation.champion import compare_with_champion

        t1 = time.perf_counter()
        compare_with_champion(df, summary, label_like=label_like, bertscore_model=eval_cfg.bertscore_model,
                              num_layers=eval_cfg.bertscore_num_layers, n_resamples=eval_cfg.bootstrap_samples,
                              seed=seed, confidence=float(summary.get("bootstrap", {}).get("confidence", 0.95)))
        timings["champion_metrics_seconds"] = time.perf_counter() - t1
    if df.attrs.get("champion_run_id"):
        summary["champion_run_id"] = df.attrs["champion_run_id"]
        summary["errors"] = error_counts(df) | {"any": summary["errors"].get("any", 0)} \
            if "champion_error" in df else summary["errors"]
    if df.attrs.get("champion_skipped"):
        summary["champion_skipped"] = df.attrs["champion_skipped"]
    if judge is not None:
        summary["judge"] = judge
    verdict = apply_gate(gate_cfg, summary)
    files = report_mod.write_report(
        summary, df, out, verdict=verdict.model_dump(mode="json"),
        training_rows=training.training_metrics if training else None,
        validation_rows=training.validation_metrics if training else None, targets=targets)
    return EvaluationResult(
        n_examples=summary["n_examples"], n_scored=summary["n_scored"], errors=summary["errors"],
        metrics={k: v for k, v in summary.items() if k not in ("n_examples", "n_scored", "errors")},
        gate=verdict, files=files, base_target=targets["base"], custom_target=targets["custom"],
        champion_target=targets.get("champion"), timings=timings)


def evaluate_endpoints(runtime_client: Any, *, test_path: str | Path, data_format: str, base_target: str,
                       custom_target: str, invoke_shape: str, eval_cfg: EvaluationConfig, gate_cfg: GateConfig,
                       label_like: bool, out_dir: str | Path, training: TrainingResult | None = None,
                       seed: int = 42, is_retryable: Callable[[BaseException], bool] | None = None,
                       invoke_fn: Callable[..., InvokeResult] | None = None) -> EvaluationResult:
    """Both phases in one call: collect the outputs, then score, gate and write the report."""
    df = collect_outputs(runtime_client, test_path=test_path, data_format=data_format, base_target=base_target,
                         custom_target=custom_target, invoke_shape=invoke_shape, eval_cfg=eval_cfg,
                         out_dir=out_dir, seed=seed, is_retryable=is_retryable, invoke_fn=invoke_fn)
    return score_outputs(df, eval_cfg=eval_cfg, gate_cfg=gate_cfg, label_like=label_like, out_dir=out_dir,
                         training=training, seed=seed)


# ---------------------------------------------------------------------------------------------
# flow glue: client lookup, Prefect task, S3 record of a finished evaluation


def _client(clients: Any, service: str) -> Any:
    """Find a boto3 client in the flow's ``clients`` bundle (attribute, mapping or factory)."""
    attr = service.replace("-", "_")
    for name in (attr, "runtime" if service == "bedrock-runtime" else attr):
        if hasattr(clients, name):
            return getattr(clients, name)
        if isinstance(clients, dict) and name in clients:
            return clients[name]
    if isinstance(clients, dict) and service in clients:
        return clients[service]
    if hasattr(clients, "client"):
        return clients.client(service)
    if hasattr(clients, "meta") and getattr(clients.meta, "service_model", None) is not None:
        return clients  # already a client
    raise EvaluationError(f"no {service} client in {type(clients).__name__}")


def _collect_task_fn(clients: Any, config: Any, prepared: Any, family: Any, endpoint: Any,
                     out_dir: str, champion: ChampionPlan | None = None) -> pd.DataFrame:
    from tasks.catalog import load_catalog

    if prepared.test is None:
        raise EvaluationError("prepared data has no test split")
    return collect_outputs(
        _client(clients, "bedrock-runtime"), test_path=prepared.test.path, data_format=prepared.format,
        base_target=load_catalog().inference_id(config.base_model), custom_target=endpoint.arn,
        invoke_shape=family.invoke_shape, eval_cfg=config.evaluation, out_dir=out_dir, champion=champion)


def _score_task_fn(df: pd.DataFrame, config: Any, prepared: Any, training: TrainingResult | None,
                   out_dir: str, judge: dict[str, Any] | None = None) -> EvaluationResult:
    return score_outputs(df, eval_cfg=config.evaluation, gate_cfg=config.gate, label_like=prepared.label_like,
                         out_dir=out_dir, training=training, judge=judge)


# ---------------------------------------------------------------------------------------------
# LLM-as-judge (issue 19): after the outputs are in (no serving resource needed: the judge is a base model)


def judge_target(judge_cfg: Any) -> tuple[str, str]:
    """(model id to invoke, invoke shape) of the judge: the catalog's inference id and shape when it knows the
    model, else the id as written and ``evaluation.judge.invoke_shape`` (required then)."""
    from tasks.catalog import UnknownModelError, load_catalog

    cat = load_catalog()
    target = cat.invoke_id(judge_cfg.model)      # tasks/permissions.py grants InvokeModel on the same id
    try:
        shape = cat.family_of(judge_cfg.model).invoke_shape
    except UnknownModelError:  # not in the catalog: the config must say how to call it
        shape = None
    shape = judge_cfg.invoke_shape or shape
    if shape is None:
        raise EvaluationError(f"evaluation.judge.model {judge_cfg.model!r} is not in the catalog: set "
                              "evaluation.judge.invoke_shape (nova, claude, llama, titan or cohere)")
    return target, shape


def judge_outputs(runtime_client: Any, s3: Any, df: pd.DataFrame, *, eval_cfg: EvaluationConfig,
                  output_uri: str | None, seed: int = 42, is_retryable: Callable[[BaseException], bool] | None = None,
                  invoke_fn: Callable[..., InvokeResult] | None = None) -> dict[str, Any] | None:
    """The judge's pairwise verdicts on ``df`` (custom vs base, and vs champion when it was evaluated), through
    tasks/evaluation/invoke.py with the evaluation's retries; the cache is read from and written back to S3 next
    to the evaluation records (``s3`` or ``output_uri`` None: in memory only). None when ``evaluation.judge`` is
    not set."""
    from tasks.evaluation import judge as J
    from tasks.evaluation.invoke import invoke_text

    jc = eval_cfg.judge
    if jc is None:
        return None
    target, shape = judge_target(jc)
    invoke_fn = invoke_fn or invoke_text
    retryable = is_retryable or default_is_retryable

    def call(text: str) -> InvokeResult:
        def once(_: Any) -> InvokeResult:
            return invoke_fn(runtime_client, target, shape, prompt=text, system=None, max_tokens=jc.max_tokens,
                             temperature=0.0)
        return _call_with_retries(once, None, _NoLimit(), eval_cfg.invoke_retries, retryable, 0.25, 20.0)

    kept = s3 is not None and bool(output_uri)        # else the cache lives in memory for this call only
    uri = J.cache_uri(output_uri, jc.model, jc.rubric) if output_uri else None
    cache = J.load_cache(s3, uri, jc.model, jc.rubric) if kept else J.JudgeCache(model=jc.model, rubric=jc.rubric)
    t0 = time.perf_counter()
    cache_error: str | None = None
    try:
        out = J.judge_table(df, call, cache, model=jc.model, rubric=jc.rubric, against=["base", "champion"],
                            max_examples=jc.max_examples, concurrency=eval_cfg.concurrency,
                            n_resamples=eval_cfg.bootstrap_samples, seed=seed)
    finally:
        if kept:                            # what was paid for is kept, even when judging stopped half-way
            try:
                J.save_cache(s3, uri, cache)
            except Exception as err:  # noqa: BLE001 - the verdicts are in hand: a lost cache costs a rerun, not them
                from tasks.aws.errors import describe_error

                cache_error = redact_text(f"could not write the judge's cache {uri}: {describe_error(err)}")
                log.warning("%s; the verdicts are kept in this evaluation, a rerun asks the judge again", cache_error)
    out.update(cache_uri=uri, seconds=time.perf_counter() - t0)
    if cache_error:
        out["cache_error"] = cache_error
    return out


def _judge_task_fn(clients: Any, config: Any, df: pd.DataFrame, output_uri: str | None) -> dict[str, Any] | None:
    """``output_uri`` None (an evaluation-only run, no bucket of its own): the judge's cache is in memory only."""
    if config.evaluation.judge is None:
        return None
    return judge_outputs(_client(clients, "bedrock-runtime"), _client(clients, "s3"), df,
                         eval_cfg=config.evaluation, output_uri=output_uri)


# ---------------------------------------------------------------------------------------------
# the champion of the run's lineage (issue 19): who it is, its recorded outputs, recording this run's


def champion_plan(clients: Any, config: Any, *, output_uri: str, test_sha256: str, invoke_shape: str,
                  run_id: str | None, account: str | None = None) -> ChampionPlan | None:
    """The lineage's champion as this run's evaluation runs it (tasks/evaluation/champion.py ``plan_champion``),
    read from the registry of ``config.name`` (tasks/registry); None on the lineage's first run, or when this run
    is the champion itself."""
    from tasks.evaluation.champion import plan_champion, settings_of
    from tasks.registry import store_for_config

    registry = store_for_config(clients, config, account).read()
    return plan_champion(_client(clients, "s3"), registry, output_uri=output_uri, test_sha256=test_sha256,
                         settings=settings_of(config.evaluation, invoke_shape), this_run_id=run_id)


def record_run_outputs(clients: Any, *, output_uri: str, df: pd.DataFrame, test_sha256: str, eval_cfg: Any,
                       invoke_shape: str, run_id: str | None, custom_model_arn: str,
                       champion: ChampionPlan | None = None) -> dict[str, str]:
    """Store the per-example outputs next to each model's evaluation records, so a later evaluation on the same
    test split reuses them: this run's model (``custom``) under this run's output uri; the champion's (recorded
    ones merged with those served now) under the champion's run, when any was served now. {target: s3 uri}."""
    from tasks.evaluation.champion import outputs_from_table, outputs_uri, record_outputs, settings_of

    s3 = _client(clients, "s3")
    settings = settings_of(eval_cfg, invoke_shape)
    out = {"custom": record_outputs(s3, outputs_uri(output_uri, test_sha256, settings), outputs_from_table(
        df, "custom", test_sha256=test_sha256, settings=settings, model=custom_model_arn, run_id=run_id))}
    if champion is not None and champion.outputs_uri and "champion_output" in df:
        rec = outputs_from_table(df, "champion", test_sha256=test_sha256, settings=settings,
                                 model=champion.custom_model_arn, run_id=champion.run_id)
        before = champion.recorded.outputs if champion.recorded else {}
        if set(rec.outputs) - set(before):
            rec = rec.model_copy(update={"outputs": {**before, **rec.outputs}})
            out["champion"] = record_outputs(s3, champion.outputs_uri, rec)
    return out


def _record_key(output_uri: str, eval_key: str) -> tuple[str, str]:
    bucket, prefix = split_s3_uri(output_uri)
    return bucket, child_key(prefix, f"evaluation/{eval_key}.json")


def record_evaluation(clients: Any, output_uri: str, eval_key: str, evaluation: EvaluationResult) -> str:
    """Store the finished evaluation next to the job output (a rerun reuses it)."""
    from tasks.aws.redact import redact

    bucket, key = _record_key(output_uri, eval_key)
    body = json.dumps(redact(evaluation.model_dump(mode="json")))   # no account id in what is stored
    _client(clients, "s3").put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    return s3_uri(bucket, key)


def _custom_endpoint(s3: Any) -> str | None:
    """The S3 endpoint when it is not AWS's own (the emulator, an S3-compatible store): browser links go there."""
    from urllib.parse import urlparse

    url = str(getattr(getattr(s3, "meta", None), "endpoint_url", "") or "")
    host = urlparse(url).hostname or ""
    return None if not url or host.endswith((".amazonaws.com", ".amazonaws.com.cn")) else url


PRESIGNED_S = 7 * 24 * 3600     # SigV4's longest presigned URL (https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-presigned-url.html)


def report_link(s3: Any, uri: str, region: str) -> str:
    """Where a browser opens the S3 object ``uri``: on AWS the S3 console's object page (the reader signs in; it
    never expires); on another endpoint (the emulator, an S3-compatible store, which has no console) a presigned
    GET, valid 7 days."""
    from tasks.evaluation.report import browser_link

    if _custom_endpoint(s3) is None:
        return browser_link(uri, region)
    bucket, key = split_s3_uri(uri)
    return s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGNED_S)


def publish_report(clients: Any, output_uri: str, eval_key: str, evaluation: EvaluationResult,
                   region: str) -> EvaluationResult:
    """The report's files in S3 next to the evaluation record (``<output>/evaluation/<eval key>/``), readable from
    any machine, and the Prefect artifacts linking there (charts embedded, no worker-disk link). Returns the
    evaluation with ``files[<name>_s3]`` = the S3 copies, so the manifest's ``report`` names them."""
    from tasks.aws.errors import describe_error, is_transient
    from tasks.evaluation.report import publish_artifacts, upload_report

    s3 = _client(clients, "s3")
    bucket, prefix = split_s3_uri(output_uri)
    try:
        copies = upload_report(s3, evaluation.files, bucket, child_key(prefix, f"evaluation/{eval_key}/"))
    except Exception as err:
        if is_transient(err):
            raise                   # retried by the task wrapper
        # the evaluation itself is recorded next (and is what a rerun reuses): a report copy that cannot be made
        # (e.g. a policy without the report's keys) is said, not a failed run
        log.warning("the report could not be copied to s3://%s/%s: %s; its artifacts name the files on this "
                    "machine", bucket, child_key(prefix, f"evaluation/{eval_key}/"), describe_error(err))
        copies = {}
    try:
        publish_artifacts(evaluation, links={k: report_link(s3, u, region) for k, u in copies.items()})
    except Exception as err:  # noqa: BLE001 - an artifact is for people; the run's result is in S3 already
        log.warning("could not publish the evaluation artifacts: %s", err)
    return evaluation.model_copy(update={"files": {**evaluation.files, **{f"{k}_s3": u for k, u in copies.items()}}})


def load_recorded_evaluation(clients: Any, output_uri: str, eval_key: str) -> EvaluationResult | None:
    bucket, key = _record_key(output_uri, eval_key)
    try:
        body = _client(clients, "s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # noqa: BLE001
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
            return None
        raise
    return EvaluationResult.model_validate_json(body)


# Prefect wrappers: thin, no retries (each model call has its own retries inside run_comparison) and no
# Prefect cache (boto3 clients cannot be hashed; a finished evaluation is recorded in S3 instead).
collect_outputs_task = task(name="evaluate-invoke", retries=0, cache_policy=NO_CACHE)(_collect_task_fn)
score_outputs_task = task(name="evaluate-score", retries=0, cache_policy=NO_CACHE)(_score_task_fn)
judge_outputs_task = task(name="evaluate-judge", retries=0, cache_policy=NO_CACHE)(_judge_task_fn)


# the record of a finished evaluation is one S3 write: retried on transient errors like every AWS step, so a
# 5xx burst longer than botocore's attempts does not throw away an evaluation that already ran
record_evaluation_task = aws_task(record_evaluation, name="record-evaluation")
# the per-example outputs a later evaluation on the same data reuses; the champion lookup reads S3 only
record_run_outputs_task = aws_task(record_run_outputs, name="record-outputs")
champion_plan_task = aws_task(champion_plan, name="champion-plan")
# the report's files to S3 + the artifacts: S3 writes, retried like the record
publish_report_task = aws_task(publish_report, name="publish-report")
