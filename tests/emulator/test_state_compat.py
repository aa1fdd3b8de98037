"""A state file written by the earlier layout (emulator/bedrock.py: one class, dict resources; state version 2)
loads into the moto-style layout (emulator/bedrock/: resource classes, one backend per account+Region) unchanged:
the same Get answers, lists, tags, idempotency tokens and billing; a newer state version is refused with a clear
error. tests/emulator/data/state-dict-layout.json was written by the earlier layout (commit f3132ff) through real
boto3 calls: a completed job and its custom model, a PT and a deployment in service, a stopped job, a deleted PT,
and a PT in us-west-2; ``expect`` holds what the earlier layout answered for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from emulator.bedrock import CustomizationJob, CustomModel, CustomModelDeployment, ProvisionedThroughput
from emulator.server import Emulator
from emulator.testing import boto3_clients, running_emulator
from tests.support.emulator import SPEED, code_of

DATA = json.loads((Path(__file__).parent / "data" / "state-dict-layout.json").read_text())


def _norm(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str, sort_keys=True))


@pytest.fixture
def old_state(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "bedrock.json").write_text(json.dumps(DATA["state"]))
    return d


def test_every_resource_of_the_old_layout_round_trips_through_its_class():
    for region in DATA["state"]["regions"].values():
        for kind, cls in (("jobs", CustomizationJob), ("models", CustomModel), ("pts", ProvisionedThroughput),
                          ("deployments", CustomModelDeployment)):
            for arn, raw in region[kind].items():
                obj = cls.from_dict(raw)
                assert {k: v for k, v in obj.to_dict().items() if k in raw or v is not None} == raw, arn


def test_an_old_state_file_answers_as_the_old_layout_did(old_state):
    e = DATA["expect"]
    with running_emulator(speed=SPEED, state_dir=old_state) as h:
        c = boto3_clients(h.url)
        assert _norm(c.bedrock.get_model_customization_job(jobIdentifier=e["job"])) | {"ResponseMetadata": None} \
            == e["job_get"] | {"ResponseMetadata": None}
        for key, call in (("model_get", lambda: c.bedrock.get_custom_model(modelIdentifier=e["model"])),
                          ("pt_get", lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=e["pt"])),
                          ("dep_get", lambda: c.bedrock.get_custom_model_deployment(
                              customModelDeploymentIdentifier=e["dep"]))):
            got = _norm({k: v for k, v in call().items() if k != "ResponseMetadata"})
            assert got == e[key], key
        jobs = {j["jobName"]: j["status"] for j in
                c.bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"]}
        assert jobs == {"old-job": "Completed", "old-stopped": "Stopped"}
        assert [p["provisionedModelName"] for p in
                c.bedrock.list_provisioned_model_throughputs()["provisionedModelSummaries"]] == ["old-pt"]
        assert c.bedrock.list_tags_for_resource(resourceARN=e["pt"])["tags"] == [{"key": "k", "value": "v"}]
        assert c.bedrock.list_tags_for_resource(resourceARN=e["model"])["tags"] == [{"key": "team", "value": "m"}]
        # the idempotency token of the old create still names the old PT
        again = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="old-pt",
                                                              modelId=e["model"], clientRequestToken="old-pt-token",
                                                              tags=[{"key": "k", "value": "v"}])
        assert again["provisionedModelArn"] == e["pt"]
        with pytest.raises(ClientError) as exc:
            c.bedrock.get_provisioned_model_throughput(provisionedModelId=e["deleted_pt"])
        assert code_of(exc)[0] == "ResourceNotFoundException"
        west = boto3_clients(h.url, region="us-west-2")
        assert west.bedrock.get_provisioned_model_throughput(provisionedModelId=e["west_pt"])["status"] == "InService"
        billing = h.ledger()["billing"]
        assert billing["pt_model_unit_seconds"] > 0 and billing["training_token_epochs"] > 0
        history = h.ledger()["resources"][e["job"]]["history"]
        assert [s["state"] for s in history] == ["InProgress", "Completed"]


def test_the_new_layout_writes_what_it_reads(old_state):
    with running_emulator(speed=SPEED, state_dir=old_state) as h:
        boto3_clients(h.url).bedrock.list_custom_models()
    saved = json.loads((old_state / "bedrock.json").read_text())
    assert saved["version"] == 2
    for region, rd in DATA["state"]["regions"].items():
        for kind in ("jobs", "models", "pts", "deployments", "tokens", "tags"):
            assert set(saved["regions"][region][kind]) == set(rd[kind]), (region, kind)
        for arn, raw in rd["jobs"].items():
            assert {k: saved["regions"][region]["jobs"][arn][k] for k in raw} == raw


def test_a_newer_state_version_is_refused_naming_the_file(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "bedrock.json").write_text(json.dumps({**DATA["state"], "version": 3}))
    with pytest.raises(ValueError, match=r"bedrock.json is state version 3; this emulator reads versions 1 to 2"):
        Emulator(speed=SPEED, state_dir=d)
