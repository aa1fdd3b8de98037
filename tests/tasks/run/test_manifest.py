"""The run manifest (tasks/run/manifest.py) on its own: the typed document, the file it writes, the step
records, and the one step list the flow and `forge rerun` share. No Prefect, no AWS."""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import pytest

from tasks.run.manifest import (
    CORE_KEYS,
    GUARD,
    RERUN_STEPS,
    STEPS,
    Manifest,
    RunManifest,
    Step,
    new_run_id,
)

ACCOUNT = "123456789012"
JOB_ARN = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:model-customization-job/abc"


def on_disk(m: Manifest) -> dict:
    return json.loads(m.path.read_text(encoding="utf-8"))


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return Manifest.create(tmp_path / "runs", "demo-20250101-000000-abcd", {"name": "demo", "base_model": "m"})


# -- create / load / find ------------------------------------------------------------------------
def test_create_writes_the_section_8_keys(manifest):
    d = on_disk(manifest)
    assert list(d)[:len(CORE_KEYS)] == list(CORE_KEYS)
    assert d["status"] == "running" and d["attempts"] == 1 and d["run_key"] is None
    assert d["data"] == {} and d["steps"] == {} and d["resources"] == {} and d["metrics"] == {} and d["gate"] == {}
    assert d["cost"] == {"estimated_usd": None, "billed": {}}
    assert set(d["timings"]) == {"started"}
    assert set(d) == set(CORE_KEYS) | {"attempts"}, "a new manifest writes nothing else"


def test_create_again_is_the_next_attempt_of_the_same_run(manifest, tmp_path):
    manifest.step_started("prepare")
    manifest.step_done("prepare", output={"x": 1})
    manifest.finish("failed")
    again = Manifest.create(tmp_path / "runs", manifest.run_id, {"name": "demo", "changed": True})
    d = on_disk(again)
    assert d["attempts"] == 2 and d["status"] == "running" and d["config"]["changed"] is True
    assert d["steps"]["prepare"]["output"] == {"x": 1}, "the earlier attempt's record is kept"


def test_load_and_find(manifest, tmp_path):
    runs = tmp_path / "runs"
    assert Manifest.load(manifest.path).data == manifest.data
    assert Manifest.load(manifest.run_dir).data == manifest.data, "a run folder loads too"
    assert Manifest.find(runs, manifest.run_id).path == manifest.path
    with pytest.raises(FileNotFoundError, match="no run 'nope'"):
        Manifest.find(runs, "nope")


def test_new_run_id_carries_the_name():
    a, b = new_run_id("demo"), new_run_id("demo")
    assert a.startswith("demo-") and a != b


# -- the file ------------------------------------------------------------------------------------
def test_every_save_is_atomic_and_leaves_a_readable_file(manifest, monkeypatch):
    manifest.add_resource("job", "x")
    before = manifest.path.read_text()
    real = os.replace

    def crash(src, dst):
        raise OSError("disk gone (injected)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        manifest.add_resource("role", "y")
    monkeypatch.setattr(os, "replace", real)
    assert manifest.path.read_text() == before, "a failed write leaves the previous file whole"
    assert [p.name for p in manifest.run_dir.iterdir()] == ["manifest.json"], "no temp file left behind"
    json.loads(manifest.path.read_text())


def test_account_ids_are_redacted_on_disk_not_in_memory(manifest):
    manifest.add_resource("job", JOB_ARN)
    manifest.step_started("customize")
    manifest.step_done("customize", output={"job_arn": JOB_ARN})
    text = manifest.path.read_text()
    assert ACCOUNT not in text
    assert on_disk(manifest)["resources"]["job"] == "arn:aws:bedrock:us-east-1:<account>:model-customization-job/abc"
    assert manifest.doc.resources["job"] == JOB_ARN, "the run itself keeps the real ARN"


def test_config_is_redacted_when_recorded(tmp_path):
    m = Manifest.create(tmp_path, "r", {"aws": {"kms_key_id": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k"}})
    assert ACCOUNT not in m.path.read_text()


# -- steps ---------------------------------------------------------------------------------------
def test_step_started_done_records_times_and_timing(manifest):
    manifest.step_started("upload")
    s = on_disk(manifest)["steps"]["upload"]
    assert s == {"status": "running", "started": s["started"], "ended": None}
    manifest.step_done("upload", adopted=True, output={"bucket": "b"})
    d = on_disk(manifest)
    s = d["steps"]["upload"]
    assert s["status"] == "completed" and s["adopted"] is True and s["ended"] and s["output"] == {"bucket": "b"}
    assert isinstance(d["timings"]["upload"], float) and d["timings"]["upload"] >= 0


def test_step_failed_records_the_error_and_a_restart_clears_it(manifest):
    manifest.step_started("poll")
    manifest.step_failed("poll", RuntimeError("job Failed: " + "x" * 3000))
    s = on_disk(manifest)["steps"]["poll"]
    assert s["status"] == "failed" and s["error"].startswith("job Failed") and len(s["error"]) == 2000
    assert "poll" in on_disk(manifest)["timings"]
    manifest.step_started("poll")
    assert "error" not in on_disk(manifest)["steps"]["poll"]


def test_step_done_or_failed_without_a_start_still_has_a_start(manifest):
    manifest.step_done("teardown")
    manifest.step_failed("evaluate", "boom")
    steps = on_disk(manifest)["steps"]
    assert steps["teardown"]["started"] and steps["evaluate"]["started"]


def test_step_output_only_for_completed_steps(manifest):
    manifest.step_started("prepare")
    manifest.step_done("prepare", output={"a": 1})
    assert manifest.step_output("prepare") == {"a": 1}
    manifest.step_started("prepare")
    assert manifest.step_output("prepare") is None, "running: not reusable"
    manifest.step_failed("prepare", "x")
    assert manifest.step_output("prepare") is None, "failed: not reusable"
    manifest.steps_settled(["provision"], status="skipped")
    assert manifest.step_output("provision") is None
    assert manifest.step_output("never-ran") is None


def test_first_unfinished_step(manifest):
    assert manifest.first_unfinished_step() == "prepare"
    for step in STEPS[:3]:
        manifest.step_started(step)
        manifest.step_done(step)
    manifest.step_started("customize")
    manifest.step_failed("customize", "denied")
    assert manifest.first_unfinished_step() == "customize"
    for step in STEPS:
        manifest.step_done(step)
    assert manifest.first_unfinished_step() is None


def test_steps_settled_adopted_and_skipped(manifest):
    manifest.steps_settled(("provision", "evaluate", "teardown"), adopted=True)
    steps = on_disk(manifest)["steps"]
    assert all(steps[s]["status"] == "completed" and steps[s]["adopted"] is True for s in ("provision", "evaluate",
                                                                                             "teardown"))
    manifest.steps_settled(("provision",), status="skipped")
    assert on_disk(manifest)["steps"]["provision"]["status"] == "skipped"
    assert on_disk(manifest)["steps"]["provision"]["adopted"] is False


def test_a_guard_refusal_is_its_own_step_not_upload(manifest):
    manifest.guard_refused("budget", "estimated cost $9.00 exceeds budget.max_usd=$0.01")
    d = on_disk(manifest)
    g = d["steps"][GUARD]
    assert g["status"] == "failed" and g["guard"] == "budget"
    assert g["error"] == "refused before spending: estimated cost $9.00 exceeds budget.max_usd=$0.01"
    assert "upload" not in d["steps"]
    assert manifest.first_unfinished_step() == "prepare" and GUARD not in STEPS
    manifest.guard_passed()
    g = on_disk(manifest)["steps"][GUARD]
    assert g["status"] == "completed" and "error" not in g, "a rerun that gets past the guard clears it"


def test_a_guard_that_passes_writes_nothing(manifest):
    manifest.guard_passed()
    assert GUARD not in on_disk(manifest)["steps"]


@pytest.mark.parametrize("status", ["succeeded", "failed", "gate_failed"])
def test_finish_statuses(manifest, status):
    manifest.finish(status)
    d = on_disk(manifest)
    assert d["status"] == status and d["timings"]["ended"] and d["timings"]["total_seconds"] >= 0


def test_finish_rejects_an_unknown_status(manifest):
    with pytest.raises(ValueError):
        manifest.finish("exploded")


def test_update_metrics_cost_and_extra_keys(manifest):
    manifest.update(run_key="abc123", flow_run_id="fr-1", flow_run_ids=["fr-1"], rerun_from=None,
                    error="RuntimeError: boom")
    manifest.set_metrics(training={"final_training_loss": 0.1})
    manifest.set_cost_estimate(None, 1.5, {"lines": []})
    manifest.update(gate={"rule": "custom beats base", "passed": True, "reasons": []})
    d = on_disk(manifest)
    assert d["run_key"] == "abc123" and d["flow_run_ids"] == ["fr-1"] and d["rerun_from"] is None
    assert d["metrics"] == {"training": {"final_training_loss": 0.1}}
    assert d["cost"] == {"estimated_usd": None, "billed": {}, "known_usd": 1.5, "estimate": {"lines": []}}
    assert d["gate"] == {"rule": "custom beats base", "passed": True, "reasons": []}
    assert manifest.doc.gate.passed is True


# -- older and newer manifests -------------------------------------------------------------------
def test_an_older_manifest_with_only_the_section_8_keys_loads_and_saves(tmp_path):
    old = {"run_id": "old-run", "run_key": "k", "status": "succeeded", "config": {"name": "old"},
           "data": {"content_hash": "h", "counts": {"train": 3}},
           "steps": {s: {"status": "completed", "started": "2024-01-01T00:00:00+00:00",
                         "ended": "2024-01-01T00:00:01+00:00", "adopted": False} for s in STEPS},
           "resources": {"job": "arn:aws:bedrock:us-east-1:<account>:model-customization-job/j"},
           "metrics": {"base": {"accuracy": 0.1}, "custom": {"accuracy": 0.9}, "comparison": {}},
           "gate": {"rule": "r", "passed": True}, "cost": {"estimated_usd": 1.0, "billed": {}},
           "timings": {"started": "2024-01-01T00:00:00+00:00"}}
    p = tmp_path / "old-run" / "manifest.json"
    p.parent.mkdir()
    p.write_text(json.dumps(old))
    m = Manifest.find(tmp_path, "old-run")
    assert m.first_unfinished_step() is None and m.doc.gate.passed is True and m.doc.attempts is None
    m.save()
    assert on_disk(m) == old, "loading and saving changes nothing"


def test_a_manifest_missing_sections_still_loads_and_gets_them(tmp_path):
    p = tmp_path / "r" / "manifest.json"
    p.parent.mkdir()
    p.write_text(json.dumps({"run_id": "r", "status": "failed", "steps": {}, "newer_key": {"x": 1}}))
    m = Manifest.load(p)
    m.set_cost_estimate(2.0, 2.0, {})
    d = on_disk(m)
    assert set(CORE_KEYS) <= set(d) and d["cost"]["estimated_usd"] == 2.0
    assert d["newer_key"] == {"x": 1}, "unknown keys are kept"


def test_run_manifest_is_the_typed_document():
    doc = RunManifest.model_validate({"run_id": "r", "steps": {"prepare": {"status": "completed", "x": 1}}})
    assert doc.steps["prepare"].status == "completed" and doc.step_status("upload") is None
    assert doc.to_json()["steps"] == {"prepare": {"status": "completed", "x": 1}}


# -- the one step list ---------------------------------------------------------------------------
def test_the_step_list_is_defined_once():
    assert STEPS == ["prepare", "upload", "create-role", "customize", "poll", "provision", "evaluate", "teardown"]
    assert list(typing.get_args(Step)) == STEPS
    assert RERUN_STEPS == STEPS[:-1]


def test_forge_rerun_choices_are_the_manifest_steps():
    import argparse

    from forge.commands import run

    sub = argparse.ArgumentParser().add_subparsers()
    run.register(sub)
    rerun = sub.choices["rerun"]
    (action,) = [a for a in rerun._actions if a.dest == "from_step"]
    assert list(action.choices) == RERUN_STEPS
    assert "teardown" not in action.choices and "evaluate" in action.choices


def test_the_flow_parameter_type_is_the_manifest_rerun_steps():
    from prefect.utilities.callables import parameter_schema

    from flows.customize import customize_model

    schema = parameter_schema(customize_model).model_dump()
    node = schema["properties"]["rerun_from"]
    enums = [alt.get("enum") for alt in node.get("anyOf", [node]) if alt.get("enum")]
    if not enums and "$ref" in str(node):
        enums = [d["enum"] for d in schema.get("definitions", {}).values() if "enum" in d]
    assert enums and list(enums[0]) == RERUN_STEPS
