"""Metric functions on small, hand-checkable cases; statistics on synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from tasks.evaluation import metrics as M


@pytest.fixture(scope="module")
def bert():
    """Load the packaged MiniLM once for the module (the scorer is cached in-process)."""
    return M.get_bertscorer(M.PACKAGED_MINILM)


def _df(refs, base, custom, base_err=None, custom_err=None):
    n = len(refs)
    return pd.DataFrame({
        "example_id": range(n), "system": [None] * n, "prompt": [f"p{i}" for i in range(n)], "reference": refs,
        "base_output": base, "custom_output": custom,
        "base_latency_ms": [100.0 + i for i in range(n)], "custom_latency_ms": [50.0 + i for i in range(n)],
        "base_input_tokens": [10] * n, "base_output_tokens": [2] * n,
        "custom_input_tokens": [10] * n, "custom_output_tokens": [3] * n,
        "base_attempts": [1] * n, "custom_attempts": [1] * n,
        "base_error": base_err or [None] * n, "custom_error": custom_err or [None] * n,
    })


def test_normalize_answer():
    assert M.normalize_answer("  Positive. ") == "positive"
    assert M.normalize_answer("Hello,\n  WORLD!") == "hello world"
    assert M.normalize_answer(None) == ""


def test_label_metrics_hand_checked_confusion(bert):
    refs = ["a", "a", "a", "b", "b", "c"]
    base = ["a", "b", "c", "a", "c", "a"]            # 1/6 correct
    custom = ["A", "a.", "b", "b", "a", "c"]         # normalizes to a,a,b,b,a,c: 4/6 correct
    df = _df(refs, base, custom)
    s = M.compute_metrics(df, label_like=True, n_resamples=200)
    # custom per class: a P=2/3 R=2/3 F1=2/3; b P=1/2 R=1/2 F1=1/2; c P=R=F1=1 -> macro 13/18
    assert s["custom"]["accuracy"] == pytest.approx(4 / 6)
    assert s["custom"]["macro_f1"] == pytest.approx(13 / 18)
    assert s["custom"]["exact_match"] == pytest.approx(4 / 6)
    assert s["base"]["accuracy"] == pytest.approx(1 / 6)
    assert s["per_class"]["a"]["custom_accuracy"] == pytest.approx(2 / 3)
    assert s["per_class"]["c"]["support"] == 1
    assert s["per_class"]["b"]["accuracy_delta"] == pytest.approx(0.5 - 0.0)
    assert list(df["custom_exact_match"]) == [1, 1, 0, 1, 0, 1]
    assert s["comparison"]["accuracy"]["n"] == 6
    assert s["comparison"]["macro_f1"]["delta"] == pytest.approx(13 / 18 - s["base"]["macro_f1"])
    # weighted F1 by support: (3*2/3 + 2*1/2 + 1*1)/6
    assert s["custom"]["weighted_f1"] == pytest.approx((2 + 1 + 1) / 6)


def test_vectorized_macro_f1_equals_sklearn():
    rng = np.random.default_rng(3)
    labels = ["x", "y", "z", "w"]
    t = rng.integers(0, 4, 50)
    p = rng.integers(0, 5, 50)                      # 4 = a label outside the set
    idx = np.vstack([np.arange(50), rng.integers(0, 50, (30, 50))])
    got = M._macro_f1_resampled(t, p, idx, 4)
    names = np.array(labels + ["other"])
    for row, g in zip(idx, got, strict=True):
        present = sorted(set(names[t[row]]))
        want = f1_score(names[t[row]], names[p[row]], labels=present, average="macro", zero_division=0)
        assert g == pytest.approx(want)


def test_macro_f1_ci_brackets_the_point_estimate_with_many_small_classes():
    """77 classes, 100 examples (the BANKING77 demo's shape): most classes have one example, so most
    resamples miss some classes. The CI must still be centred on the observed difference."""
    rng = np.random.default_rng(11)
    labels = [f"intent_{i}" for i in range(77)]
    y = [labels[i % 77] for i in range(100)]
    custom = [v if rng.random() < 0.8 else labels[rng.integers(77)] for v in y]
    base = ["generic reply"] * 100
    r = M.paired_bootstrap_macro_f1(y, base, custom, sorted(set(y)), n_resamples=1000, seed=0)
    assert r["ci_low"] < r["mean_delta"] < r["ci_high"]
    assert 0.6 < r["mean_delta"] < 0.95


def test_bertscore_identical_and_ordering(bert):
    ref = "The cat sat on the mat."
    P, R, F = M.bertscore([ref, "A cat was sitting on the mat.", "Quarterly revenue grew by four percent."],
                          [ref, ref, ref])
    assert F[0] == pytest.approx(1.0, abs=1e-4)
    assert F[0] > F[1] > F[2]
    P, R, F = M.bertscore(["", "hi"], ["hello", ""])   # empty side: 0, as bert-score documents
    assert list(F) == [0.0, 0.0]


def test_rouge_and_errors_kept_out_of_scores(bert):
    refs = ["the quick brown fox", "hello there", "x y z"]
    df = _df(refs, ["the quick brown fox", "hello", None], ["quick brown fox", "hello there", "x y z"],
             base_err=[None, None, "ThrottlingException: slow down"])
    s = M.compute_metrics(df, label_like=False, n_resamples=200)
    assert s["n_scored"] == 2 and s["errors"]["base"] == 1 and s["errors"]["calls"] == 1
    assert np.isnan(df.loc[2, "base_rouge_l"]) and np.isnan(df.loc[2, "custom_bertscore_f1"])
    assert df.loc[0, "base_rouge_l"] == pytest.approx(1.0)
    # rouge-L F of "hello" vs "hello there": P=1, R=1/2 -> 2/3
    assert df.loc[1, "base_rouge_l"] == pytest.approx(2 / 3)
    assert "accuracy" not in s["comparison"] and "per_class" not in s
    assert s["bertscore"] == {"model": "all-MiniLM-L6-v2", "model_type": s["bertscore"]["model_type"], "num_layers": 6}
    assert s["latency"]["base"]["p50_ms"] == pytest.approx(100.5)   # error row's latency excluded
    assert s["tokens"]["custom"]["output_total"] == 9


def test_paired_bootstrap_known_difference_and_none():
    rng = np.random.default_rng(0)
    base = rng.normal(0.6, 0.1, 300)
    custom = base + 0.05 + rng.normal(0, 0.05, 300)
    r = M.paired_bootstrap(base, custom, n_resamples=2000, seed=1)
    assert r["n"] == 300 and r["ci_low"] < 0.05 < r["ci_high"] and r["ci_low"] > 0
    same = base + rng.normal(0, 0.05, 300)
    r0 = M.paired_bootstrap(base, same, n_resamples=2000, seed=1)
    assert r0["ci_low"] < 0 < r0["ci_high"]
    # NaN pairs are dropped, and the count says so
    b = np.r_[base[:10], np.nan]
    assert M.paired_bootstrap(b, np.r_[custom[:10], 0.3], n_resamples=100)["n"] == 10


def test_paired_bootstrap_coverage_roughly_nominal():
    """Over 200 synthetic experiments with true delta 0.05 the 95% CI covers it ~95% of the time."""
    rng = np.random.default_rng(11)
    hits = 0
    for s in range(200):
        b = rng.normal(0.5, 0.1, 80)
        c = b + 0.05 + rng.normal(0, 0.08, 80)
        r = M.paired_bootstrap(b, c, n_resamples=500, seed=s)
        hits += r["ci_low"] <= 0.05 <= r["ci_high"]
    assert 0.88 <= hits / 200 <= 0.99


def test_win_tie_loss():
    w = M.win_tie_loss([0, 1, 0.5, 1], [1, 1, 0.2, np.nan])
    assert (w["wins"], w["ties"], w["losses"], w["n"]) == (1, 1, 1, 3)


def test_training_summary_from_csv_rows():
    tr = [{"step_number": str(i), "epoch_number": str(i // 5), "training_loss": str(3 - 0.1 * i), "perplexity": "9"}
          for i in range(10)]
    va = [{"step_number": "5", "epoch_number": "1", "validation_loss": "2.0", "perplexity": "7.4"},
          {"step_number": "10", "epoch_number": "2", "validation_loss": "2.5", "perplexity": "12.2"}]
    s = M.training_summary(tr, va)
    assert s["training"]["n_points"] == 10 and s["training"]["final_loss"] == pytest.approx(2.1)
    assert s["training"]["per_epoch_mean_loss"]["0"] == pytest.approx(2.8)
    assert s["validation"]["min_loss"] == 2.0 and s["validation"]["min_loss_step"] == 5
    assert s["validation"]["final_perplexity"] == pytest.approx(12.2)
    assert s["validation_loss_rising"] is True
    assert M.training_summary([], [])["training"] == {"n_points": 0}


def test_unknown_hub_model_needs_layer():
    with pytest.raises(ValueError, match="bertscore_num_layers"):
        M.resolve_bertscore_model("someone/unknown-model", None)
    assert M.resolve_bertscore_model("roberta-large", None)[1] == 17
