"""A lineage with a champion, made directly (no promotion run): custom models trained from the base model with
plain boto3 jobs, recorded in the lineage's registry (tasks/registry, the same conditional writes a promotion
makes) and switched to champion. For tests of ``start_from: champion`` that need the pointer at a given model, or
moved between two of them (tests/flows/test_champion_kill.py).

``evaluated_week(tmp_path, name, week, ...)`` is one week's run of a lineage that trained and was evaluated (its
gate verdict in the manifest), ready for ``flows.promote.promote_if_gate_passed``.

``custom_model_of_base(c, name)`` trains one (``c``: ``emulator.testing.boto3_clients``); ``crown(config, run_id,
model_arn)`` makes it the champion of ``config.name`` (clients from the standard AWS settings: point them at the
emulator first, e.g. ``tests.support.aws.use_fresh_emulator``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.aws.clients import account_id, make_clients
from tasks.config import PipelineConfig
from tasks.registry import Champion, ModelVersion, record_version, store_for_config, switch_champion
from tests.support.emulator import job_request, prepare, wait


def evaluated_week(tmp_path: Path, name: str, week: int, preset: str = "quick", passed: bool = True,
                   mode: str = "on-demand") -> Any:
    """Run ``<name>-week<week>`` of lineage ``name``: trained on the emulator (tests.support.aws.trained, production
    serving ``mode``), its manifest under ``tmp_path/runs`` with a gate verdict ``passed`` and BERTScores to
    match; a flows.context.RunContext."""
    from flows.context import RunContext
    from tasks.catalog import load_catalog
    from tasks.run.manifest import Manifest
    from tests.support.aws import trained

    d = tmp_path / f"w{week}"
    d.mkdir()
    s, arn, _ = trained(d, name=name, preset=preset, production={"mode": mode})
    manifest = Manifest.create(tmp_path / "runs", f"{name}-week{week}", s.config.model_dump(mode="json"))
    manifest.update(run_key=s.names.run_key, gate={"rule": "bertscore_f1: custom - base > 0", "passed": passed},
                    data={"content_hash": f"data-{week}", "sha256": {"test": f"t-{week}"}},
                    metrics={"base": {"bertscore_f1": 0.5}, "custom": {"bertscore_f1": 0.6 if passed else 0.4}})
    manifest.add_resource("custom_model", arn)
    return RunContext(config=s.config, manifest=manifest, clients=s.clients, flow_run_id="local",
                      family=load_catalog().family_of(s.config.base_model), account=s.account,
                      run_key=s.names.run_key, names=s.names)


def custom_model_of_base(c, name: str) -> str:
    """A Completed fine-tuning job of the base model (tests/support/emulator.py BASE): its custom model's ARN."""
    inp = prepare(c)
    arn = c.bedrock.create_model_customization_job(**job_request(inp, jobName=f"{name}-job",
                                                                 customModelName=name))["jobArn"]
    done = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"}, 60)
    assert done["status"] == "Completed", done.get("failureMessage")
    return done["outputModelArn"]


def crown(config: PipelineConfig, run_id: str, model_arn: str) -> str | None:
    """Record ``model_arn`` as run ``run_id``'s version of the lineage and make it the champion (from whatever
    the champion is now). Creates the lineage's bucket (the run's default bucket) when it is missing. Returns the
    previous champion's run id."""
    clients = make_clients(config.aws)
    store = store_for_config(clients, config, account_id(clients))
    try:
        clients.s3.head_bucket(Bucket=store.bucket)
    except Exception:  # noqa: BLE001 - missing: make it, as the run's upload step would
        clients.s3.create_bucket(Bucket=store.bucket)
    record_version(store, ModelVersion(run_id=run_id, run_key=f"key-{run_id}"[:40], custom_model_arn=model_arn,
                                       gate={"passed": True}))
    before = store.read().champion
    switch_champion(store, before.run_id if before else None, Champion(run_id=run_id, custom_model_arn=model_arn))
    champion = store.read().champion
    assert champion is not None and champion.custom_model_arn == model_arn, champion
    return before.run_id if before else None


def champion_of(config: PipelineConfig) -> Champion | None:
    clients = make_clients(config.aws)
    return store_for_config(clients, config, account_id(clients)).read().champion
