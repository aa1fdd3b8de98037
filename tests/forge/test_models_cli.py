"""`forge models`, `forge promote`, `forge rollback` on the emulator: history, champion, live production serving;
promote a run from its manifest, roll back; every bad input a clear message and exit 2."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from forge.cli import main
from tasks.aws.redact import REDACTED
from tasks.registry import store_for_config
from tasks.run.manifest import Manifest
from tests.support.aws import alive, trained, use_fresh_emulator


@pytest.fixture
def emu(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


def _lineage(tmp_path, n: int):
    """``n`` finished runs of one lineage with manifests in tmp_path/runs, and the lineage's config file."""
    name = f"c-{uuid.uuid4().hex[:8]}"
    runs = []
    for i, preset in enumerate(("quick", "balanced")[:n]):
        d = tmp_path / f"v{i}"
        d.mkdir()
        s, arn, _ = trained(d, name=name, preset=preset, production={"mode": "on-demand"})
        run_id = f"{name}-w{i + 1}"
        m = Manifest.create(tmp_path / "runs", run_id, s.config.model_dump(mode="json"))
        m.update(run_key=s.names.run_key, gate={"rule": "bertscore_f1: custom - base > 0", "passed": True},
                 metrics={"custom": {"bertscore_f1": 0.7 + i / 10}}, data={"content_hash": f"h{i}"})
        m.add_resource("custom_model", arn)
        runs.append((s, run_id))
    cfg = tmp_path / "lineage.yaml"
    cfg.write_text(yaml.safe_dump({"name": name, "base_model": runs[0][0].config.base_model,
                                   "data": {"source": "data.jsonl"}, "preset": "quick",
                                   "production": {"mode": "on-demand"}}))
    return runs, str(cfg)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_promote_models_and_rollback(emu, tmp_path, capsys):
    [(s, w1), (_, w2)], cfg = _lineage(tmp_path, 2)
    runs = str(tmp_path / "runs")
    assert main(["promote", w1, "--runs-dir", runs]) == 0                 # the config from the run's manifest
    assert f"{w1} is the champion of {s.config.name}" in capsys.readouterr().out
    assert main(["models", s.config.name, "--config", cfg, "--json"]) == 0
    view = _json(capsys)
    assert view["champion"]["run_id"] == w1 and [v["status"] for v in view["versions"]] == ["champion"]
    [live] = view["live_production"]
    assert live["champion"] and live["status"] == "Active" and live["version"] == w1
    assert s.account not in json.dumps(view) and REDACTED in live["arn"]     # account ids never printed
    store = store_for_config(s.clients, s.config, s.account)
    w1_serving = store.read().champion.serving_arn

    assert main(["promote", w2, "--config", cfg, "--runs-dir", runs]) == 0
    assert "retired:" in capsys.readouterr().out and not alive(s.clients, w1_serving)
    bucket, prefix = store.bucket, store.key.split("/registry/")[0]
    assert main(["models", s.config.name, "--registry-uri", f"s3://{bucket}/{prefix}/registry/",
                 "--endpoint", emu.url]) == 0
    text = capsys.readouterr().out
    assert f"champion: {w2}" in text and "retired" in text and "live: deployment" in text

    assert main(["promote", w1, "--config", cfg, "--runs-dir", runs]) == 2    # retired: not by itself
    assert f"forge rollback {s.config.name} --to {w1}" in capsys.readouterr().err

    assert main(["rollback", s.config.name, "--config", cfg]) == 0
    assert f"{w1} is the champion" in capsys.readouterr().out
    reg = store.read()
    assert reg.champion.run_id == w1 and reg.version(w2).status == "rolled-back"
    assert main(["models", s.config.name, "--config", cfg, "--json"]) == 0
    assert [x["version"] for x in _json(capsys)["live_production"]] == [w1]


def test_bad_input_is_a_clear_message_and_exit_2(emu, tmp_path, capsys):
    [(s, w1)], cfg = _lineage(tmp_path, 1)
    runs = str(tmp_path / "runs")
    cases = [
        (["models", s.config.name], "--config CFG"),
        (["models", "other-lineage", "--config", cfg], "the config names"),
        (["models", "Bad/Name", "--config", cfg], "not a config name"),
        (["models", s.config.name, "--registry-uri", "http://x", "--endpoint", emu.url], "--registry-uri"),
        (["models", s.config.name, "--config", cfg], "no registry for lineage"),
        (["promote", "ghost-run", "--runs-dir", runs], "no run 'ghost-run'"),
        (["promote", "../etc", "--runs-dir", runs], "is a path"),
        (["promote", w1, "--config", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["rollback", s.config.name], "--config CFG is required"),
        (["rollback", s.config.name, "--config", cfg], "no registry for lineage"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
    failed = Manifest.find(runs, w1)
    failed.update(gate={"rule": "bertscore_f1: custom - base > 0", "passed": False})
    assert main(["promote", w1, "--runs-dir", runs]) == 2
    err = capsys.readouterr().err
    assert "did not pass its quality gate" in err and "--force" in err
    none_cfg = tmp_path / "none.yaml"
    none_cfg.write_text(open(cfg).read().replace("on-demand", "none"))
    assert main(["promote", w1, "--config", str(none_cfg), "--runs-dir", runs, "--force"]) == 2
    assert "production.mode is none" in capsys.readouterr().err


def test_forge_resources_lists_production_serving_with_its_monthly_cost(emu, tmp_path, capsys):
    from tasks import promote, serve
    from tasks.registry import ModelVersion

    [(s, w1)], _ = _lineage(tmp_path, 1)
    assert main(["promote", w1, "--runs-dir", str(tmp_path / "runs")]) == 0
    d = tmp_path / "pt"
    d.mkdir()
    p, arn, tags = trained(d, production={"mode": "provisioned", "model_units": 1})
    pt_run = promote.promote(p.clients, p.config, store_for_config(p.clients, p.config, p.account),
                             ModelVersion(run_id=f"{p.config.name}-w1", run_key=p.names.run_key, custom_model_arn=arn,
                                          gate={"passed": True}), timeout_s=60, initial_interval_s=0.1)
    # and one evaluation PT of a run
    evaluation = serve.provision(p.clients, p.config.model_copy(update={"serving": p.config.serving.model_copy(
        update={"mode": "provisioned"})}), p.names, arn, tags)
    capsys.readouterr()
    assert main(["resources", "--json"]) == 0
    rows = {r["arn"]: r for r in _json(capsys)}
    prod = [r for r in rows.values() if r.get("role") == "production"]
    assert {r["lineage"] for r in prod} == {s.config.name, p.config.name}
    deployment = next(r for r in prod if r["kind"] == "deployment")
    pt = next(r for r in prod if r["kind"] == "provisioned")
    assert deployment["monthly_usd"] == 0 and "on-demand" in deployment["monthly"]
    assert pt["monthly_usd"] is None and "pricing.pt_hour_no_commit" in pt["monthly"]   # no confirmed price
    assert pt["sweep"].startswith("keep: production serving") and pt_run.serving.arn.endswith(pt["arn"][-12:])
    assert [r["role"] for r in rows.values() if r["arn"].endswith(evaluation.arn[-12:])] == ["run"]
    assert main(["resources"]) == 0
    text = capsys.readouterr().out
    assert text.count("PRODUCTION") == 2 and "$0/month fixed" in text
