"""tasks/serve.py against the emulator: deployment vs provisioned throughput, adopt, failures, quota."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_customize import set_up_run, use_fresh_emulator, use_session_emulator

from tasks import aws, customize, serve, teardown


@pytest.fixture
def env(monkeypatch, aws_env):
    return use_session_emulator(monkeypatch, aws_env)


@pytest.fixture
def fresh_env(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


def trained(tmp_path, **over):
    s = set_up_run(tmp_path, **over)
    job = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    model_arn = customize.wait_for_job(s.clients, job.job_arn, timeout_s=60, initial_interval_s=0.2).custom_model_arn
    serving_tags = aws.standard_tags(s.names.run_key, "flow-run-1", {}, expires_in_hours=s.config.serving.max_hours)
    return s, model_arn, serving_tags


def resources_named(ledger: dict, name: str) -> list[dict]:
    return [r for r in ledger["resources"].values() if r["name"] == name]


def test_auto_mode_uses_an_on_demand_deployment_where_the_catalog_allows_it(env, tmp_path):
    s, model_arn, tags = trained(tmp_path)
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert ep.kind == "deployment" and ep.name == s.names.deployment and not ep.adopted
    ready = serve.wait_serving(s.clients, ep, timeout_s=60, initial_interval_s=0.2)
    assert ready.status == "Active"
    again = serve.provision(aws.make_clients(s.config.aws), s.config, s.names, model_arn, tags)
    assert again.adopted and again.arn == ep.arn
    assert len(resources_named(env.ledger(), s.names.deployment)) == 1
    have = aws.bedrock_tags(s.clients, ep.arn)
    assert have["managed-by"] == "bedrock-forge" and "forge-expires-at" in have
    teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ready])


def test_provisioned_throughput_without_commitment_capped_and_adopted(env, tmp_path):
    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned", "model_units": 1, "max_model_units": 1})
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert ep.kind == "provisioned" and ep.model_units == 1
    pt = s.clients.bedrock.get_provisioned_model_throughput(provisionedModelId=ep.arn)
    assert "commitmentDuration" not in pt and pt["modelArn"] == model_arn
    assert aws.bedrock_tags(s.clients, ep.arn)["forge-expires-at"] == tags["forge-expires-at"]
    assert serve.wait_serving(s.clients, ep, timeout_s=60, initial_interval_s=0.2).status == "InService"
    again = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert again.adopted and again.arn == ep.arn
    assert len(resources_named(env.ledger(), s.names.provisioned)) == 1
    teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep])


def test_billing_resources_always_get_an_expiry(fresh_env, tmp_path):
    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned", "max_hours": 1})
    no_expiry = {k: v for k, v in tags.items() if k != "forge-expires-at"}
    ep = serve.provision(s.clients, s.config, s.names, model_arn, no_expiry)
    expires = aws.parse_expiry(aws.bedrock_tags(s.clients, ep.arn)["forge-expires-at"])
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)


def test_serving_mode_choice():
    from test_customize import make_config

    assert serve.serving_kind(make_config("x"), "us-east-1") == "deployment"
    assert serve.serving_kind(make_config("x"), "eu-west-1") == "provisioned"   # not an on-demand region
    assert serve.serving_kind(make_config("x", base_model="anthropic.claude-3-haiku-20240307-v1:0:200k"),
                              "us-east-1") == "provisioned"
    assert serve.serving_kind(make_config("x", serving={"mode": "provisioned"}), "us-east-1") == "provisioned"


def test_failed_provisioning_raises_its_message_and_a_rerun_replaces_it(fresh_env, tmp_path):
    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned"})
    fresh_env.set_faults([{"operation": "CreateProvisionedModelThroughput", "pt_outcome": "Failed", "count": 1}])
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    with pytest.raises(serve.ServingFailed, match="failed: Provisioning failed"):
        serve.wait_serving(s.clients, ep, timeout_s=60, initial_interval_s=0.2)
    fresh_env.set_faults([])
    replaced = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert replaced.arn != ep.arn and not replaced.adopted
    assert serve.wait_serving(s.clients, replaced, timeout_s=60, initial_interval_s=0.2).status == "InService"


def test_transient_faults_on_create_are_survived(fresh_env, tmp_path):
    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned"})
    fresh_env.set_faults([{"operation": "CreateProvisionedModelThroughput", "error": "ThrottlingException", "count": 1}])
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert serve.wait_serving(s.clients, ep, timeout_s=60, initial_interval_s=0.2).status == "InService"
    calls = [c for c in fresh_env.ledger()["calls"] if c["operation"] == "CreateProvisionedModelThroughput"]
    assert [c["error"] for c in calls] == ["ThrottlingException", None]


def test_model_unit_quota_error_names_the_quota_and_how_to_free_it(fresh_env, tmp_path):
    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned"})
    for i in range(2):   # the account's 2 no-commitment model units, used by other runs
        other = s.names.model_copy(update={"provisioned": f"{s.names.provisioned}-o{i}", "pt_token": f"tok-o{i}"})
        serve.provision(s.clients, s.config, other, model_arn, tags)
    with pytest.raises(aws.QuotaExceeded) as exc:
        serve.provision(s.clients, s.config, s.names, model_arn, tags)
    msg = str(exc.value)
    assert "model-unit quota" in msg and "forge sweep" in msg and "Service Quotas" in msg
