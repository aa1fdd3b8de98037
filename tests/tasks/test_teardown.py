"""tasks/teardown.py against the emulator: idempotent, managed-only, by run / flow run / expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_customize import use_fresh_emulator, use_session_emulator
from test_serve import trained

from tasks import aws, serve, teardown


@pytest.fixture
def env(monkeypatch, aws_env):
    return use_session_emulator(monkeypatch, aws_env)


@pytest.fixture
def fresh_env(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


def _pt(s, model_arn, tags, suffix: str):
    names = s.names.model_copy(update={"provisioned": f"{s.names.provisioned}-{suffix}", "pt_token": f"tok-{suffix}"})
    cfg = s.config.model_copy(update={"serving": s.config.serving.model_copy(update={"mode": "provisioned"})})
    return serve.provision(s.clients, cfg, names, model_arn, tags)


def _alive(s, arn: str) -> bool:
    live = [p["provisionedModelArn"] for p in s.clients.bedrock.list_provisioned_model_throughputs()["provisionedModelSummaries"]]
    live += [d["customModelDeploymentArn"] for d in
             s.clients.bedrock.list_custom_model_deployments()["modelDeploymentSummaries"]]
    return arn in live


def test_teardown_deletes_serving_model_and_data_and_is_idempotent(env, tmp_path):
    s, model_arn, tags = trained(tmp_path)
    ep = serve.wait_serving(s.clients, serve.provision(s.clients, s.config, s.names, model_arn, tags), timeout_s=60,
                            initial_interval_s=0.2)
    kw = dict(run_key=s.names.run_key, endpoints=[ep], delete_custom_model=True, custom_model_arn=model_arn,
              delete_data=True, uploaded=s.uploaded)
    first = teardown.teardown(s.clients, **kw)
    assert ep.arn in first.deleted and model_arn in first.deleted and s.uploaded.train_uri in first.deleted
    assert first.errors == [] and not _alive(s, ep.arn)
    second = teardown.teardown(s.clients, **kw)
    assert second.deleted == [] and second.errors == []
    assert {ep.arn, model_arn, s.uploaded.train_uri} <= set(second.already_gone)


def test_teardown_keeps_the_custom_model_and_data_by_default(env, tmp_path):
    s, model_arn, tags = trained(tmp_path)
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    report = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep], custom_model_arn=model_arn,
                               uploaded=s.uploaded)
    assert report.deleted == [ep.arn]
    assert s.clients.bedrock.get_custom_model(modelIdentifier=model_arn)["modelArn"] == model_arn
    assert s.clients.s3.head_object(Bucket=s.uploaded.bucket, Key=s.uploaded.train_uri.split("/", 3)[3])


def test_resources_without_the_managed_tag_are_never_touched(fresh_env, tmp_path):
    s, model_arn, tags = trained(tmp_path)
    theirs = s.clients.bedrock.create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName="someone-elses-pt", modelId=model_arn,
        tags=[{"key": "forge-run-key", "value": s.names.run_key}])["provisionedModelArn"]
    ep = serve.ServingEndpoint(kind="provisioned", arn=theirs, name="someone-elses-pt", model_arn=model_arn)
    report = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep])
    assert report.skipped_unmanaged == [theirs] and report.deleted == []
    swept = teardown.sweep(s.clients, now=datetime.now(UTC) + timedelta(days=365), is_flow_run_terminal=lambda _: True,
                           dry_run=False)
    assert theirs in swept.skipped_unmanaged and theirs not in swept.deleted
    assert _alive(s, theirs)


def test_teardown_run_deletes_only_that_flow_runs_billing_resources(fresh_env, tmp_path):
    s, model_arn, _ = trained(tmp_path)
    mine = _pt(s, model_arn, aws.standard_tags(s.names.run_key, "flow-a", {}, 2), "a")
    other = _pt(s, model_arn, aws.standard_tags(s.names.run_key, "flow-b", {}, 2), "b")
    report = teardown.teardown_run(s.clients, "flow-a")
    assert report.deleted == [mine.arn]
    assert _alive(s, other.arn) and not _alive(s, mine.arn)
    assert teardown.teardown_run(s.clients, "flow-a").deleted == []


def test_sweep_deletes_expired_and_orphaned_resources_only(fresh_env, tmp_path):
    s, model_arn, _ = trained(tmp_path)
    now = datetime.now(UTC)
    expired = _pt(s, model_arn, aws.standard_tags(s.names.run_key, "run-live", {}, 1, now=now - timedelta(hours=3)), "x")
    orphan = _pt(s, model_arn, aws.standard_tags(s.names.run_key, "run-dead", {}, 5, now=now), "o")
    terminal = {"run-live": False, "run-dead": True}
    dry = teardown.sweep(s.clients, now=now, is_flow_run_terminal=terminal.get, dry_run=True)
    assert sorted(dry.deleted) == sorted([expired.arn, orphan.arn])
    assert _alive(s, expired.arn) and _alive(s, orphan.arn)           # dry run deletes nothing
    swept = teardown.sweep(s.clients, now=now, is_flow_run_terminal=terminal.get, dry_run=False)
    assert sorted(swept.deleted) == sorted([expired.arn, orphan.arn])
    assert not _alive(s, expired.arn) and not _alive(s, orphan.arn)
    # unknown flow-run state and not yet expired: kept
    kept = _pt(s, model_arn, aws.standard_tags(s.names.run_key, "run-unknown", {}, 5, now=now), "k")
    assert teardown.sweep(s.clients, now=now, is_flow_run_terminal=lambda _: None, dry_run=False).deleted == []
    assert _alive(s, kept.arn)
