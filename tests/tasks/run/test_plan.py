"""tasks/run/plan.py: what a run will buy. The cost guard (tasks/estimate.py) and the provision stage
(tasks/serve.py) share one decision; these tests pin that they agree."""

from __future__ import annotations

import subprocess
import sys

import pytest
from botocore.stub import ANY

from tasks import estimate, serve
from tasks.catalog import load_catalog
from tasks.run import plan
from tasks.run.names import resource_names
from tests.support import REPO_ROOT
from tests.support.aws import NOVA, make_config, stubbed_clients

MODEL_ARN = "arn:aws:bedrock:us-east-1:111122223333:custom-model/amazon.nova-micro-v1:0:128k/abcdefghijkl"


def test_serving_mode_choice():
    assert plan.serving_kind(make_config("x"), region="us-east-1") == "deployment"
    assert plan.serving_kind(make_config("x"), region="eu-west-1") == "provisioned"   # not an on-demand region
    assert plan.serving_kind(make_config("x", base_model="anthropic.claude-3-haiku-20240307-v1:0:200k"),
                             region="us-east-1") == "provisioned"
    assert plan.serving_kind(make_config("x", serving={"mode": "provisioned"}), region="us-east-1") == "provisioned"
    assert plan.serving_kind(make_config("x", serving={"mode": "on_demand"}), region="eu-west-1") == "deployment"
    # the region defaults to the config's
    assert plan.serving_kind(make_config("x", aws={"region": "eu-west-1"})) == "provisioned"


def test_an_empty_on_demand_region_list_means_no_region(monkeypatch):
    fam = load_catalog().family_of(NOVA)
    monkeypatch.setattr(fam, "on_demand_regions", [])
    assert not plan.on_demand_available(fam, "us-east-1")
    assert plan.serving_kind(make_config("x"), fam, "us-east-1") == "provisioned"
    assert plan.serving_kind(make_config("x")) == "provisioned"


def test_model_units_are_capped_even_past_the_config_validator():
    cfg = make_config("x", serving={"model_units": 2, "max_model_units": 3})
    assert plan.model_units(cfg) == 2
    over = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"model_units": 5})})
    assert plan.model_units(over) == 3


def _what_serve_creates(cfg, kind: str):
    """Run serve.provision against a stubbed Bedrock that accepts exactly the expected create request."""
    clients, stub = stubbed_clients(cfg.aws.region)
    names = resource_names(cfg, "0123456789ab", account="111122223333")
    if kind == "provisioned":
        stub.add_response("list_provisioned_model_throughputs", {"provisionedModelSummaries": []},
                          {"nameContains": names.provisioned})
        stub.add_response("create_provisioned_model_throughput", {"provisionedModelArn": MODEL_ARN + "-pt"},
                          {"modelUnits": plan.model_units(cfg), "provisionedModelName": names.provisioned,
                           "modelId": MODEL_ARN, "tags": ANY, "clientRequestToken": names.pt_token})
    else:
        stub.add_response("list_custom_model_deployments", {"modelDeploymentSummaries": []},
                          {"nameContains": names.deployment})
        stub.add_response("create_custom_model_deployment", {"customModelDeploymentArn": MODEL_ARN + "-dep"},
                          {"modelDeploymentName": names.deployment, "modelArn": MODEL_ARN, "description": ANY,
                           "tags": ANY, "clientRequestToken": names.deployment_token})
    with stub:
        ep = serve.provision(clients, cfg, names, MODEL_ARN, {"managed-by": "bedrock-forge"})
        stub.assert_no_pending_responses()
    return ep


@pytest.mark.parametrize("regions, region, kind", [
    ([], "us-east-1", "provisioned"),                 # the drift of issue 14: empty list, auto mode
    (None, "us-east-1", "deployment"),                # the catalog's own regions
    (None, "eu-west-1", "provisioned"),
])
def test_the_estimate_prices_exactly_what_serve_creates(monkeypatch, regions, region, kind):
    fam = load_catalog().family_of(NOVA)
    if regions is not None:
        monkeypatch.setattr(fam, "on_demand_regions", regions)
    cfg = make_config("plan", aws={"region": region},
                      serving={"mode": "auto", "model_units": 1, "max_model_units": 1, "max_hours": 1.5})
    est = estimate.build_estimate(cfg, train_chars=6000, test_records=10, test_input_chars=1200, method="prepared")
    ep = _what_serve_creates(cfg, kind)
    assert est.serving_kind == ep.kind == kind
    (line,) = [row for row in est.lines if row["item"].startswith("serving:")]
    if kind == "provisioned":
        assert line["item"] == "serving: provisioned throughput"
        assert line["quantity"] == ep.model_units * 2            # 1.5 h billed as 2 whole hours
    else:
        assert line["item"] == "serving: custom model on demand"


def test_the_cost_guard_imports_without_prefect():
    code = ("import sys; import tasks.estimate, tasks.run.plan; "
            "assert 'prefect' not in sys.modules, sorted(m for m in sys.modules if m.startswith('prefect'))")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
