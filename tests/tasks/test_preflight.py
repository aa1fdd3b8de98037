"""Live pre-flight (tasks/preflight.py) against the emulator with real boto3 clients: each refusal names the field
and the fix, and the emulator's ledger shows no mutating call."""

from __future__ import annotations

import pytest

from emulator.testing import boto3_clients, ledger_calls
from tasks.config import ConfigError
from tasks.preflight import PreflightRefused, preflight
from tests.support.aws import make_config, stubbed_clients

NOVA = "amazon.nova-micro-v1:0:128k"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0:200k"


@pytest.fixture
def emu(fresh_emulator):
    return fresh_emulator


def _refused(emu, cfg, region: str) -> PreflightRefused:
    with pytest.raises(PreflightRefused) as exc:
        preflight(boto3_clients(emu.url, region=region), cfg)
    calls = emu.ledger()["calls"]
    assert ledger_calls(emu.ledger(), mutating=True, ok=False) == []      # read-only: nothing attempted
    assert {c["operation"] for c in calls} <= {"GetFoundationModel"}
    return exc.value


def _distillation(name: str, teacher: str, **overrides):
    """A DISTILLATION config of ``teacher`` (the student: make_config's base model unless ``base_model`` is given)."""
    return make_config(name, customization_type="DISTILLATION", preset=None,
                       distillation={"teacher_model": teacher}, **overrides)


def _one(refused: PreflightRefused):
    assert len(refused.refusals) == 1, refused.refusals
    return refused.refusals[0]


def test_an_active_model_in_its_region_passes_with_only_reads(emu):
    report = preflight(boto3_clients(emu.url), make_config("ok", aws={"region": "us-east-1"}))
    assert report.ok and report.models == {NOVA: "ACTIVE"} and report.warnings == []
    calls = emu.ledger()["calls"]
    assert [c["operation"] for c in calls] == ["GetFoundationModel"]
    assert not any(c["mutating"] for c in calls)


def test_an_eol_base_model_is_refused(emu):
    cfg = make_config("eol", base_model=HAIKU, preset=None, aws={"region": "us-west-2"})
    r = _one(_refused(emu, cfg, "us-west-2"))
    assert r.field == "base_model" and "end of life" in r.message and "ACTIVE" in r.fix


def test_a_wrong_region_is_refused_naming_where_the_model_is_customizable(emu):
    cfg = make_config("region", aws={"region": "us-west-2"})
    r = _one(_refused(emu, cfg, "us-west-2"))
    assert r.field == "aws.region" and "us-west-2" in r.message and r.fix == "set aws.region to us-east-1"
    assert ledger_calls(emu.ledger(), mutating=True) == []


def test_an_unsupported_distillation_pair_is_refused(emu):
    cfg = _distillation("pair", "us.meta.llama3-3-70b-instruct-v1:0", base_model="amazon.nova-lite-v1:0:300k")
    r = _one(_refused(emu, cfg, "us-east-1"))
    assert r.field == "distillation.teacher_model"
    assert ("does not pair teacher us.meta.llama3-3-70b-instruct-v1:0 with student amazon.nova-lite-v1:0:300k"
            in r.message)
    assert "us.amazon.nova-pro-v1:0" in r.fix and "amazon.nova-pro-v1:0" in r.fix   # the teachers that take Nova Lite
    assert "nova-premier" not in r.fix                                             # past end of life: never offered
    assert ledger_calls(emu.ledger(), mutating=True) == []


def test_nova_premier_is_refused_as_a_teacher_past_end_of_life(emu):
    """Nova Premier model card: "Model EOL date: September 14, 2026" (docs/bedrock-facts.md §10)."""
    cfg = _distillation("premier", "us.amazon.nova-premier-v1:0", base_model="amazon.nova-lite-v1:0:300k")
    r = _one(_refused(emu, cfg, "us-east-1"))
    assert r.field == "distillation.teacher_model"
    assert r.message == "teacher us.amazon.nova-premier-v1:0 has reached end of life (2026-09-14)"
    assert r.fix == "teachers for amazon.nova-lite-v1:0:300k: us.amazon.nova-pro-v1:0, amazon.nova-pro-v1:0"
    assert ledger_calls(emu.ledger(), mutating=True) == []


def test_a_student_whose_only_teacher_retired_is_refused(emu):
    """Nova Pro was a student of Nova Premier only: with Premier past end of life no teacher takes it."""
    cfg = _distillation("pro", "us.amazon.nova-pro-v1:0", base_model="amazon.nova-pro-v1:0:300k")
    r = _one(_refused(emu, cfg, "us-east-1"))
    assert "does not pair teacher us.amazon.nova-pro-v1:0 with student amazon.nova-pro-v1:0:300k" in r.message
    assert "no teacher of amazon.nova-pro-v1:0:300k is still available" in r.fix
    assert "us.amazon.nova-premier-v1:0: end of life" in r.fix and "choose another student model" in r.fix


def test_a_retired_teacher_is_refused(emu):
    cfg = _distillation("teacher", "anthropic.claude-3-5-sonnet-20241022-v2:0")
    r = _one(_refused(emu, cfg, "us-east-1"))
    assert r.field == "distillation.teacher_model" and "end of life" in r.message
    assert "us.amazon.nova-pro-v1:0" in r.fix


def test_a_supported_pair_passes(emu):
    cfg = _distillation("pair-ok", "us.amazon.nova-pro-v1:0")
    report = preflight(boto3_clients(emu.url), cfg)
    assert report.ok and report.models["us.amazon.nova-pro-v1:0"] == "ACTIVE"


def test_an_unsupported_customization_type_is_refused_from_the_live_answer(emu):
    # the config grammar already refuses a type the catalog lacks; here the catalog records no Region for it, so
    # only GetFoundationModel's customizationsSupported can say no
    cfg = make_config("ctype").model_copy(update={"customization_type": "CONTINUED_PRE_TRAINING"})
    r = _one(_refused(emu, cfg, "us-east-1"))
    assert r.field == "customization_type" and "does not support CONTINUED_PRE_TRAINING" in r.message
    assert r.fix == "use one of: FINE_TUNING, DISTILLATION"
    assert ledger_calls(emu.ledger(), mutating=True) == []


@pytest.mark.parametrize("given", ["amazon.nova-micro-v1:0", "us.amazon.nova-micro-v1:0"])
def test_a_plain_id_or_profile_as_base_model_is_refused_with_the_customizable_id(emu, given):
    cfg = make_config("ids", base_model=given)
    r = _one(_refused(emu, cfg, "us-east-1"))
    assert r.field == "base_model" and r.fix == f"write base_model: {NOVA}"
    assert ("inference profile" if given.startswith("us.") else "plain model id") in r.message


def _legacy_stub(region: str = "us-east-1"):
    clients, stub = stubbed_clients(region)
    details = {"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{NOVA}", "modelId": NOVA,
               "modelName": "Nova Micro", "providerName": "Amazon", "inputModalities": ["TEXT"],
               "outputModalities": ["TEXT"], "customizationsSupported": ["FINE_TUNING", "DISTILLATION"],
               "inferenceTypesSupported": ["PROVISIONED"], "modelLifecycle": {"status": "LEGACY"}}
    stub.add_response("get_foundation_model", {"modelDetails": details}, {"modelIdentifier": NOVA})
    stub.activate()
    return clients, stub


def test_legacy_warns_when_no_pt_is_bought():
    clients, stub = _legacy_stub()
    report = preflight(clients, make_config("legacy"), buys_pt=False)
    assert report.ok and report.models == {NOVA: "LEGACY"} and "LEGACY" in report.warnings[0]
    stub.assert_no_pending_responses()


def test_legacy_is_refused_when_the_run_would_buy_a_new_pt():
    clients, _ = _legacy_stub()
    with pytest.raises(PreflightRefused) as exc:
        preflight(clients, make_config("legacy"), buys_pt=True)
    r = _one(exc.value)
    assert r.field == "base_model" and "Provisioned Throughput" in r.message


def test_refusals_are_config_errors_located_in_the_file(emu, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: t\nbase_model: amazon.nova-micro-v1:0:128k\ndata: {source: d.jsonl}\n"
                    "aws:\n  region: us-west-2\n")
    cfg = make_config("t", aws={"region": "us-west-2"})
    with pytest.raises(ConfigError) as exc:           # the CLI's ConfigError path: print problems, exit 2
        preflight(boto3_clients(emu.url, region="us-west-2"), cfg, source=path)
    assert exc.value.problems == [f"{path}:5: aws.region: {NOVA} cannot be customized with FINE_TUNING in "
                                  "us-west-2 (set aws.region to us-east-1)"]
