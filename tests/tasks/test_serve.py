"""tasks/serve.py against the emulator: deployment vs provisioned throughput, adopt, failures, quota."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tasks import serve, teardown
from tasks.aws import clients as aws_clients
from tasks.aws import errors as aws_errors
from tasks.aws import tags as aws_tags
from tests.support.aws import resources_named, trained


def test_auto_mode_uses_an_on_demand_deployment_where_the_catalog_allows_it(env, tmp_path):
    s, model_arn, tags = trained(tmp_path)
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert ep.kind == "deployment" and ep.name == s.names.deployment and not ep.adopted
    ready = serve.wait_serving(s.clients, ep, timeout_s=60, initial_interval_s=0.2)
    assert ready.status == "Active"
    again = serve.provision(aws_clients.make_clients(s.config.aws), s.config, s.names, model_arn, tags)
    assert again.adopted and again.arn == ep.arn
    assert len(resources_named(env.ledger(), s.names.deployment)) == 1
    have = aws_tags.bedrock_tags(s.clients, ep.arn)
    assert have["managed-by"] == "bedrock-forge" and "forge-expires-at" in have
    teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ready])


def test_provisioned_throughput_without_commitment_capped_and_adopted(env, tmp_path):
    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned", "model_units": 1, "max_model_units": 1})
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert ep.kind == "provisioned" and ep.model_units == 1
    pt = s.clients.bedrock.get_provisioned_model_throughput(provisionedModelId=ep.arn)
    assert "commitmentDuration" not in pt and pt["modelArn"] == model_arn
    assert aws_tags.bedrock_tags(s.clients, ep.arn)["forge-expires-at"] == tags["forge-expires-at"]
    assert serve.wait_serving(s.clients, ep, timeout_s=60, initial_interval_s=0.2).status == "InService"
    again = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert again.adopted and again.arn == ep.arn
    assert len(resources_named(env.ledger(), s.names.provisioned)) == 1
    teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep])


def test_billing_resources_always_get_an_expiry(fresh_env, tmp_path):
    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned", "max_hours": 1})
    no_expiry = {k: v for k, v in tags.items() if k != "forge-expires-at"}
    ep = serve.provision(s.clients, s.config, s.names, model_arn, no_expiry)
    expires = aws_tags.parse_expiry(aws_tags.bedrock_tags(s.clients, ep.arn)["forge-expires-at"])
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)


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
    fresh_env.set_faults([{"operation": "CreateProvisionedModelThroughput", "error": "ThrottlingException",
                           "count": 1}])
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert serve.wait_serving(s.clients, ep, timeout_s=60, initial_interval_s=0.2).status == "InService"
    calls = [c for c in fresh_env.ledger()["calls"] if c["operation"] == "CreateProvisionedModelThroughput"]
    assert [c["error"] for c in calls] == ["ThrottlingException", None]


def test_model_unit_quota_error_names_the_quota_and_how_to_free_it(fresh_env, tmp_path):
    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned"})
    for i in range(2):   # the account's 2 no-commitment model units, used by other runs
        other = s.names.model_copy(update={"provisioned": f"{s.names.provisioned}-o{i}", "pt_token": f"tok-o{i}"})
        serve.provision(s.clients, s.config, other, model_arn, tags)
    with pytest.raises(aws_errors.QuotaExceeded) as exc:
        serve.provision(s.clients, s.config, s.names, model_arn, tags)
    msg = str(exc.value)
    assert "model-unit quota" in msg and "forge sweep" in msg and "Service Quotas" in msg


# -- partial failures and what is (not) bought -------------------------------------------------
def test_created_then_failed_raises_and_teardown_deletes_and_reports_it(fresh_env, tmp_path):
    from tests.support.aws import alive

    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned"})
    fresh_env.set_faults([{"operation": "CreateProvisionedModelThroughput", "pt_outcome": "Failed", "count": 1}])
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    with pytest.raises(serve.ServingFailed, match="deleted by teardown") as exc:
        serve.wait_serving(s.clients, ep, timeout_s=60, initial_interval_s=0.2)
    assert exc.value.code == "Failed"
    report = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep])
    assert report.deleted == [ep.arn] and report.errors == [] and not alive(s.clients, ep.arn)


def test_deployment_quota_error_names_the_quota_and_how_to_free_it(fresh_env, tmp_path):
    s, model_arn, tags = trained(tmp_path)  # auto, Nova in us-east-1: an on-demand deployment
    fresh_env.set_faults(
        [{"operation": "CreateCustomModelDeployment", "error": "ServiceQuotaExceededException", "count": 1}]
    )
    with pytest.raises(aws_errors.QuotaExceeded) as exc:
        serve.provision(s.clients, s.config, s.names, model_arn, tags)
    assert "deployment quota is full" in str(exc.value) and "forge sweep" in str(exc.value)
    assert exc.value.code == "ServiceQuotaExceededException"
    assert resources_named(fresh_env.ledger(), s.names.deployment) == []


MODEL = "arn:aws:bedrock:us-east-1:111122223333:custom-model/amazon.nova-micro-v1:0:128k/abcdefghijkl"
PT_ARN = "arn:aws:bedrock:us-east-1:111122223333:provisioned-model/pt0000000001"


def _pt_run(**serving):
    from tasks.run.names import resource_names
    from tests.support.aws import make_config

    cfg = make_config("stub", serving={"mode": "provisioned", **serving})
    return cfg, resource_names(cfg, "0123456789ab", account="111122223333")


def _summary(names, status="InService", model=MODEL, arn=PT_ARN) -> dict:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {
        "provisionedModelName": names.provisioned,
        "provisionedModelArn": arn,
        "modelArn": model,
        "desiredModelArn": model,
        "foundationModelArn": model,
        "modelUnits": 1,
        "desiredModelUnits": 1,
        "status": status,
        "creationTime": now,
        "lastModifiedTime": now,
    }


def _create_params(cfg, names, token=None, **extra) -> dict:
    from botocore.stub import ANY

    from tasks.run.plan import model_units

    return {
        "modelUnits": model_units(cfg),
        "provisionedModelName": names.provisioned,
        "modelId": MODEL,
        "tags": ANY,
        "clientRequestToken": token or names.pt_token,
        **extra,
    }


@pytest.mark.parametrize("status", ["InService", "Creating", "Updating"])
def test_an_existing_pt_is_adopted_by_name_without_a_second_create(status):
    from tests.support.aws import stubbed_clients

    cfg, names = _pt_run()
    clients, stub = stubbed_clients()
    stub.add_response(
        "list_provisioned_model_throughputs",
        {"provisionedModelSummaries": [_summary(names, status)]},
        {"nameContains": names.provisioned},
    )
    with stub:  # any create would be an unexpected call
        ep = serve.provision(clients, cfg, names, MODEL, {"managed-by": "bedrock-forge"})
        stub.assert_no_pending_responses()
    assert ep.adopted and ep.arn == PT_ARN and ep.status == status


def test_a_failed_pt_that_is_not_ours_is_not_adopted_nor_deleted():
    from tests.support.aws import stubbed_clients

    cfg, names = _pt_run()
    clients, stub = stubbed_clients()
    stub.add_response(
        "list_provisioned_model_throughputs",
        {"provisionedModelSummaries": [_summary(names, "Failed")]},
        {"nameContains": names.provisioned},
    )
    stub.add_response("list_tags_for_resource", {"tags": [{"key": "team", "value": "them"}]}, {"resourceARN": PT_ARN})
    with stub, pytest.raises(aws_errors.StageError, match="not managed by bedrock-forge"):
        serve.provision(clients, cfg, names, MODEL, {"managed-by": "bedrock-forge"})
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("status, model", [("Failed", MODEL), ("InService", MODEL + "-other")])
def test_our_pt_failed_or_serving_another_model_is_replaced_with_a_new_token(status, model):
    from tests.support.aws import stubbed_clients

    cfg, names = _pt_run()
    clients, stub = stubbed_clients()
    stub.add_response(
        "list_provisioned_model_throughputs",
        {"provisionedModelSummaries": [_summary(names, status, model)]},
        {"nameContains": names.provisioned},
    )
    stub.add_response(
        "list_tags_for_resource", {"tags": [{"key": "managed-by", "value": "bedrock-forge"}]}, {"resourceARN": PT_ARN}
    )
    stub.add_response("delete_provisioned_model_throughput", {}, {"provisionedModelId": PT_ARN})
    stub.add_response(
        "create_provisioned_model_throughput",
        {"provisionedModelArn": PT_ARN + "b"},
        _create_params(cfg, names, token=f"{names.pt_token}-r-pt0000000001"),
    )
    with stub:
        ep = serve.provision(clients, cfg, names, MODEL, {"managed-by": "bedrock-forge"})
        stub.assert_no_pending_responses()
    assert not ep.adopted and ep.arn == PT_ARN + "b"


@pytest.mark.parametrize("commitment", [None, "OneMonth"])
def test_commitment_is_sent_only_when_the_config_names_one(commitment):
    # a commitment is an explicit opt-in and never the evaluation PT (tasks/config rules): the serving stage
    # itself must still send exactly what the config names
    from tasks.run.names import resource_names
    from tests.support.aws import make_config, stubbed_clients

    extra_cfg = {"evaluation": {"enabled": False}} if commitment else {}
    cfg = make_config("stub", serving={"mode": "provisioned", "commitment": commitment,
                                       "allow_commitment": bool(commitment)}, **extra_cfg)
    names = resource_names(cfg, "0123456789ab", account="111122223333")
    clients, stub = stubbed_clients()
    stub.add_response(
        "list_provisioned_model_throughputs", {"provisionedModelSummaries": []}, {"nameContains": names.provisioned}
    )
    extra = {"commitmentDuration": commitment} if commitment else {}
    stub.add_response(
        "create_provisioned_model_throughput", {"provisionedModelArn": PT_ARN}, _create_params(cfg, names, **extra)
    )  # exact: no commitmentDuration key without one
    with stub:
        serve.provision(clients, cfg, names, MODEL, {"managed-by": "bedrock-forge"})
        stub.assert_no_pending_responses()


def test_model_units_are_capped_by_max_model_units():
    from tests.support.aws import stubbed_clients

    cfg, names = _pt_run(model_units=1, max_model_units=2)
    over = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"model_units": 9})})  # past the validator
    clients, stub = stubbed_clients()
    stub.add_response(
        "list_provisioned_model_throughputs", {"provisionedModelSummaries": []}, {"nameContains": names.provisioned}
    )
    params = _create_params(over, names)
    assert params["modelUnits"] == 2
    stub.add_response("create_provisioned_model_throughput", {"provisionedModelArn": PT_ARN}, params)
    with stub:
        ep = serve.provision(clients, over, names, MODEL, {"managed-by": "bedrock-forge"})
    assert ep.model_units == 2
    with pytest.raises(ValueError, match="exceeds max_model_units"):
        _pt_run(model_units=3, max_model_units=2)
