"""Report files exist and carry the real numbers; artifacts only inside a Prefect run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tasks.config import GateConfig
from tasks.evaluate import EvaluationResult, apply_gate
from tasks.evaluation import metrics as M
from tasks.evaluation import report as R


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    refs = ["positive", "negative", "neutral", "positive", "negative", "neutral"] * 5
    base = ["negative"] * 30
    custom = [r if i % 5 else "neutral" for i, r in enumerate(refs)]
    n = len(refs)
    df = pd.DataFrame({
        "example_id": range(n), "system": [None] * n, "prompt": [f"review number {i}" for i in range(n)],
        "reference": refs, "base_output": base, "custom_output": custom,
        "base_latency_ms": [200.0] * n, "custom_latency_ms": [100.0] * n,
        "base_input_tokens": [7] * n, "base_output_tokens": [1] * n, "custom_input_tokens": [7] * n,
        "custom_output_tokens": [1] * n, "base_attempts": [1] * n, "custom_attempts": [2] * n,
        "base_error": [None] * n, "custom_error": [None] * n,
    })
    df.loc[3, ["base_output", "base_error"]] = [None, "ThrottlingException: Rate exceeded "
                                                      "(retries exhausted after 6 attempt(s))"]
    s = M.compute_metrics(df, label_like=True, n_resamples=300)
    tr = [{"step_number": i, "epoch_number": i // 4, "training_loss": 2.0 - 0.1 * i, "perplexity": 3}
          for i in range(12)]
    va = [{"step_number": 4 * k, "epoch_number": k, "validation_loss": 1.8 - 0.1 * k, "perplexity": 3}
          for k in (1, 2, 3)]
    s["training"] = M.training_summary(tr, va)
    verdict = apply_gate(GateConfig(metric="accuracy", min_delta=0.2), s)
    out = tmp_path_factory.mktemp("report")
    files = R.write_report(s, df, out, verdict=verdict.model_dump(mode="json"), training_rows=tr,
                           validation_rows=va, targets={"base": "amazon.nova-micro-v1:0", "custom": "arn:pt/x"})
    return s, df, verdict, files


def test_files_exist_and_pngs_are_pngs(evaluated):
    _, _, _, files = evaluated
    for k in ("examples_csv", "summary_json", "report_md", "metrics_chart", "per_class_chart", "loss_chart"):
        assert k in files
    for k in ("metrics_chart", "per_class_chart", "loss_chart"):
        with open(files[k], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_csv_keeps_every_example_and_error(evaluated):
    s, _, _, files = evaluated
    df = pd.read_csv(files["examples_csv"])
    assert len(df) == 30 and df["base_error"].notna().sum() == 1
    assert "custom_bertscore_f1" in df and "base_rouge_l" in df and "custom_exact_match" in df
    assert s["n_scored"] == 29


def test_markdown_has_real_numbers(evaluated):
    s, _, verdict, files = evaluated
    md = open(files["report_md"], encoding="utf-8").read()
    acc = s["comparison"]["accuracy"]
    assert ("PASS" if verdict.passed else "FAIL") in md.splitlines()[2]
    assert f"| {acc['base']:.4f} | {acc['custom']:.4f} | {acc['delta']:+.4f} |" in md
    assert f"[{acc['ci_low']:+.4f}, {acc['ci_high']:+.4f}]" in md
    bs = s["comparison"]["bertscore_f1"]
    assert f"{bs['custom']:.4f}" in md
    assert "**n = 30 examples**, 29 scored" in md and "failed calls: base 1, custom 0" in md
    assert "`all-MiniLM-L6-v2`, layer 6" in md
    assert "| base | 200 | 200 |" in md and "| custom | 100 | 100 |" in md
    assert "ThrottlingException" in md
    assert "## Per-class accuracy" in md and "| neutral |" in md
    w = s["win_tie_loss"]["accuracy"]
    assert f"{w['win']:.0%} / {w['tie']:.0%} / {w['loss']:.0%}" in md
    assert "![metrics_chart](metrics.png)" in md


def test_summary_json_matches(evaluated):
    s, _, verdict, files = evaluated
    j = json.load(open(files["summary_json"], encoding="utf-8"))
    assert j["summary"]["comparison"]["macro_f1"]["delta"] == pytest.approx(s["comparison"]["macro_f1"]["delta"])
    assert j["gate"]["passed"] == verdict.passed and j["summary"]["n_examples"] == 30


def _result(evaluated) -> EvaluationResult:
    s, _, verdict, files = evaluated
    return EvaluationResult(n_examples=s["n_examples"], n_scored=s["n_scored"], errors=s["errors"],
                            metrics={k: v for k, v in s.items() if k not in ("n_examples", "n_scored", "errors")},
                            gate=verdict, files=files)


def test_publish_artifacts_noop_outside_prefect(evaluated):
    assert R.publish_artifacts(_result(evaluated)) is False


def test_publish_artifacts_inside_flow(evaluated, prefect_backend):
    """Issue 18 Build 2: the report opens in a browser — charts embedded in the markdown (no worker-disk path),
    links to the S3 copies, table values rounded."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    res = _result(evaluated)
    links = {k: f"http://127.0.0.1:4566/bkt/evaluation/{Path(v).name}" for k, v in res.files.items()}

    @flow
    def publish() -> bool:
        return R.publish_artifacts(res, key_prefix="eval-test", links=links)

    assert publish() is True
    with get_client(sync_client=True) as c:
        arts = {a.key: a for a in c.read_latest_artifacts()}
    keys = set(arts)
    assert {"eval-test-metrics", "eval-test-report", "eval-test-metrics-chart"} <= keys
    md = arts["eval-test-report"].data
    assert "data:image/png;base64," in md and "file://" not in md, md[:300]
    assert "](metrics.png)" not in md, "a chart named by its file name on the worker's disk does not load"
    assert links["report_md"] in md
    assert links["metrics_chart"] in arts["eval-test-metrics-chart"].data      # a link artifact: [text](url)
    table = arts["eval-test-metrics"].data
    table = json.loads(table) if isinstance(table, str) else table
    for row in table:
        for k in ("base", "custom", "delta", "ci_low", "ci_high"):
            v = row[k]
            assert v is None or round(v, 4) == v, (k, v)


def test_without_links_no_artifact_points_at_a_worker_disk(evaluated, prefect_backend):
    from prefect import flow
    from prefect.client.orchestration import get_client

    res = _result(evaluated)

    @flow
    def publish() -> bool:
        return R.publish_artifacts(res, key_prefix="eval-nolinks")

    assert publish() is True
    with get_client(sync_client=True) as c:
        arts = {a.key: a for a in c.read_latest_artifacts() if (a.key or "").startswith("eval-nolinks")}
    assert set(arts) == {"eval-nolinks-metrics", "eval-nolinks-report"}
    assert "file://" not in arts["eval-nolinks-report"].data and "(not uploaded)" in arts["eval-nolinks-report"].data


def test_the_report_is_in_s3_and_its_links_open_without_the_worker(evaluated, fresh_emulator):
    """publish_report copies every report file next to the evaluation record and names the copies; a browser-like
    GET of each link (presigned on the emulator's endpoint) returns the file's bytes."""
    import httpx

    from emulator.testing import boto3_clients
    from tasks.evaluate import publish_report, report_link

    c = boto3_clients(fresh_emulator.url)
    c.s3.create_bucket(Bucket="report-bkt")
    res = _result(evaluated)
    out = publish_report({"s3": c.s3}, "s3://report-bkt/forge/output/k1/", "evalkey", res, "us-east-1")
    copies = {k: v for k, v in out.files.items() if k.endswith("_s3")}
    assert set(copies) == {f"{k}_s3" for k in res.files}, copies
    for name, uri in copies.items():
        assert uri.startswith("s3://report-bkt/forge/output/k1/evaluation/evalkey/"), uri
        local = Path(res.files[name.removesuffix("_s3")])
        got = httpx.get(report_link(c.s3, uri, "us-east-1"), timeout=10)
        assert got.status_code == 200 and got.content == local.read_bytes(), name
    assert res.files == {k: v for k, v in out.files.items() if not k.endswith("_s3")}, "local paths kept"


def test_browser_links_on_aws_are_console_pages_that_do_not_expire():
    link = R.browser_link("s3://bkt/a b/report.md", "eu-west-1")
    assert link == "https://s3.console.aws.amazon.com/s3/object/bkt?region=eu-west-1&prefix=a%20b%2Freport.md"
