"""The emulator against AWS's own command line (issue 17): a client nobody here wrote, with its own request
serialisation, endpoint resolution and error handling. The AWS CLI (v1, pip ``awscli``: the CLI bundles its own
botocore, so it lives in its own venv, ``.venv-awscli/``, made once) drives bucket, role, a customization job, a
provisioned throughput, an invocation and the error shape, as an operator following the Bedrock user guide would
(https://docs.aws.amazon.com/cli/latest/reference/bedrock/ ; .../bedrock-runtime/invoke-model.html)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.testing import running_emulator
from tests.support import REPO_ROOT
from tests.support.emulator import BASE, SPEED, TRUST, nova_records

pytestmark = pytest.mark.slow

AWSCLI = "awscli==1.46.2"      # pip registry, 2026-10
VENV = REPO_ROOT / ".venv-awscli"


@pytest.fixture(scope="session")
def aws_exe() -> Path:
    exe = VENV / "bin" / "aws"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", AWSCLI], check=True, timeout=600)
    return exe


@pytest.fixture
def cli(aws_exe, tmp_path):
    with running_emulator(speed=SPEED, state_dir=tmp_path / "state") as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   AWS_ENDPOINT_URL=emu.url, AWS_CONFIG_FILE=str(tmp_path / "none"),
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))

        def aws(*args: str, ok: bool = True) -> dict | subprocess.CompletedProcess:
            p = subprocess.run([str(aws_exe), *args, "--output", "json"], env=env, capture_output=True, text=True,
                               timeout=120, cwd=tmp_path)
            if not ok:
                return p
            assert p.returncode == 0, f"aws {' '.join(args)}: exit {p.returncode}\n{p.stderr}"
            try:
                return json.loads(p.stdout) if p.stdout.strip() else {}
            except ValueError:        # the s3 verbs (mb, cp, ls) print text
                return {"text": p.stdout}
        aws.emu = emu  # type: ignore[attr-defined]
        yield aws


def _until(fn, status: set[str], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        d = fn()
        if d.get("status") in status:
            return d
        assert time.monotonic() < deadline, f"still {d.get('status')}"
        time.sleep(0.2)


def test_the_catalog_as_the_cli_lists_it(cli):
    models = cli("bedrock", "list-foundation-models", "--by-customization-type", "FINE_TUNING")["modelSummaries"]
    assert models and all(m["modelArn"].endswith(m["modelId"]) for m in models)
    assert BASE in {m["modelId"] for m in models}
    one = cli("bedrock", "get-foundation-model", "--model-identifier", BASE)["modelDetails"]
    assert one["modelId"] == BASE and "FINE_TUNING" in one["customizationsSupported"]


def _llama_records(n: int) -> bytes:
    return "".join(json.dumps({"prompt": f"question number {i} about topic {i % 4}", "completion": f"label-{i % 4}"})
                   + "\n" for i in range(n)).encode()


NOVA_BODY = {"schemaVersion": "messages-v1", "messages": [
    {"role": "user", "content": [{"text": "question number 3 about topic 3"}]}], "inferenceConfig": {"maxTokens": 20}}
# region, base model, training records, hyperparameters, invoke body, the answer's text
# (Llama: at least 100 training + validation records, model-customization-prepare; no validation file here)
FLOWS = {
    "us-east-1-nova": ("us-east-1", BASE, nova_records(24), "epochCount=1,learningRate=0.00001", NOVA_BODY,
                       lambda a: a["output"]["message"]["content"][0]["text"]),
    "us-west-2-llama-3.1": ("us-west-2", "meta.llama3-1-8b-instruct-v1:0:128k", _llama_records(100),
                            "epochCount=1,learningRate=0.0001", {"prompt": "question number 3 about topic 3",
                                                                 "max_gen_len": 20}, lambda a: a["generation"]),
    # Llama 3.3 70B trains on Converse-format records (bedrock-conversation-2024, model-customization-prepare),
    # as Nova does; it is still invoked with the Llama body
    "us-west-2-llama-3.3": ("us-west-2", "meta.llama3-3-70b-instruct-v1:0:128k", nova_records(100),
                            "epochCount=1,learningRate=0.0001", {"prompt": "question number 3 about topic 3",
                                                                 "max_gen_len": 20}, lambda a: a["generation"]),
}


@pytest.mark.parametrize("flow", list(FLOWS))
def test_a_job_a_pt_and_an_invocation_through_the_cli(cli, tmp_path, flow):
    """The seed guides' manual flow in the model's customization Region: Nova in us-east-1, Llama in us-west-2."""
    region, base, records, hp, request, text_of = FLOWS[flow]
    bucket = "cli-bucket-1"
    (tmp_path / "train.jsonl").write_bytes(records)
    (tmp_path / "trust.json").write_text(json.dumps(TRUST))
    cli("s3", "mb", f"s3://{bucket}", "--region", region)
    cli("s3", "cp", str(tmp_path / "train.jsonl"), f"s3://{bucket}/data/train.jsonl", "--region", region)
    role = cli("iam", "create-role", "--role-name", "cli-role", "--assume-role-policy-document",
               f"file://{tmp_path / 'trust.json'}")["Role"]["Arn"]
    (tmp_path / "policy.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/data/*"]},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/out/*"}]}))
    cli("iam", "put-role-policy", "--role-name", "cli-role", "--policy-name", "data",
        "--policy-document", f"file://{tmp_path / 'policy.json'}")
    rg = ("--region", region)
    job = cli("bedrock", "create-model-customization-job", "--job-name", "cli-job", "--custom-model-name",
              "cli-model", "--role-arn", role, "--base-model-identifier", base,
              "--training-data-config", f"s3Uri=s3://{bucket}/data/train.jsonl",
              "--output-data-config", f"s3Uri=s3://{bucket}/out/", "--hyper-parameters", hp, *rg)["jobArn"]
    assert job.startswith(f"arn:aws:bedrock:{region}:")
    done = _until(lambda: cli("bedrock", "get-model-customization-job", "--job-identifier", job, *rg),
                  {"Completed", "Failed"})
    assert done["status"] == "Completed", done.get("failureMessage")
    out = cli("s3", "ls", f"s3://{bucket}/out/", "--recursive", *rg)["text"]
    model = done["outputModelArn"]
    pt = cli("bedrock", "create-provisioned-model-throughput", "--model-units", "1",
             "--provisioned-model-name", "cli-pt", "--model-id", model, *rg)["provisionedModelArn"]
    _until(lambda: cli("bedrock", "get-provisioned-model-throughput", "--provisioned-model-id", pt, *rg),
           {"InService"})
    body = tmp_path / "body.json"
    body.write_text(json.dumps(request))
    cli("bedrock-runtime", "invoke-model", "--model-id", pt, "--body", f"fileb://{body}",
        "--content-type", "application/json", str(tmp_path / "answer.json"), *rg)
    answer = json.loads((tmp_path / "answer.json").read_text())
    assert text_of(answer)
    cli("bedrock", "delete-provisioned-model-throughput", "--provisioned-model-id", pt, *rg)
    left = cli("bedrock", "list-provisioned-model-throughputs", *rg)["provisionedModelSummaries"]
    assert all(p["provisionedModelArn"] != pt or p["status"] != "InService" for p in left)
    assert "training_artifacts" in out or "validation" in out or out.strip(), "the job wrote its output files"
    # the other Region neither lists the job nor customizes this model
    other = "us-west-2" if region == "us-east-1" else "us-east-1"
    assert cli("bedrock", "list-model-customization-jobs", "--region", other)["modelCustomizationJobSummaries"] == []
    p = cli("bedrock", "create-model-customization-job", "--job-name", "cli-job-2", "--custom-model-name",
            "cli-model-2", "--role-arn", role, "--base-model-identifier", base,
            "--training-data-config", f"s3Uri=s3://{bucket}/data/train.jsonl",
            "--output-data-config", f"s3Uri=s3://{bucket}/out/", "--region", other, ok=False)
    assert p.returncode == 255 and "ValidationException" in p.stderr and f"supported in {region}" in p.stderr, \
        p.stderr


def test_errors_reach_the_cli_as_aws_shapes_them(cli):
    p = cli("bedrock", "get-custom-model", "--model-identifier", "no-such-model", ok=False)
    # CLI v1: 255 for a service error (v2 says 254), https://docs.aws.amazon.com/cli/v1/userguide/cli-chap-returncodes.html
    assert p.returncode == 255 and "ResourceNotFoundException" in p.stderr, (p.returncode, p.stderr)
    p = cli("bedrock", "create-provisioned-model-throughput", "--model-units", "0", "--provisioned-model-name",
            "x", "--model-id", BASE, ok=False)
    assert p.returncode in (252, 254, 255) and ("ValidationException" in p.stderr or "Invalid" in p.stderr), p.stderr


def test_the_cli_v1_has_no_streaming_commands(aws_exe):
    """AWS CLI v1 omits event-stream operations, so InvokeModelWithResponseStream / ConverseStream have no CLI row
    (they are tested with boto3 in tests/emulator/test_streaming.py). If a CLI release adds them, add a row here."""
    p = subprocess.run([str(aws_exe), "bedrock-runtime", "help"], capture_output=True, text=True, timeout=120,
                       env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "PAGER": "cat"})
    text = p.stdout.replace("\b", "")
    assert "invoke-model" in text and "converse" in text, text[:500]
    assert "invoke-model-with-response-stream" not in text and "converse-stream" not in text


# -- a continued fine-tuning: a job whose base model is a custom model (issue 19 item 4, start_from: champion) ------
FOUNDATION_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{BASE}"


def _data_and_role(cli, tmp_path: Path, bucket: str = "cli-cont-1") -> str:
    """Bucket, training data, a service role that may read it and write the output: the role ARN."""
    (tmp_path / "train.jsonl").write_bytes(nova_records(24))
    (tmp_path / "trust.json").write_text(json.dumps(TRUST))
    (tmp_path / "policy.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/data/*"]},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/out/*"}]}))
    cli("s3", "mb", f"s3://{bucket}")
    cli("s3", "cp", str(tmp_path / "train.jsonl"), f"s3://{bucket}/data/train.jsonl")
    role = cli("iam", "create-role", "--role-name", "cli-cont-role", "--assume-role-policy-document",
               f"file://{tmp_path / 'trust.json'}")["Role"]["Arn"]
    cli("iam", "put-role-policy", "--role-name", "cli-cont-role", "--policy-name", "data",
        "--policy-document", f"file://{tmp_path / 'policy.json'}")
    return role


def _job_args(name: str, role: str, base: str, bucket: str = "cli-cont-1") -> list[str]:
    return ["bedrock", "create-model-customization-job", "--job-name", f"{name}-job", "--custom-model-name", name,
            "--role-arn", role, "--base-model-identifier", base,
            "--training-data-config", f"s3Uri=s3://{bucket}/data/train.jsonl",
            "--output-data-config", f"s3Uri=s3://{bucket}/out/", "--hyper-parameters",
            "epochCount=1,learningRate=0.00001"]


def _trained(cli, name: str, role: str, base: str) -> tuple[dict, dict]:
    """Create the job, wait on the emulator's virtual clock until it ends: (the job, its custom model), both as
    get-model-customization-job / get-custom-model answer."""
    arn = cli(*_job_args(name, role, base))["jobArn"]
    job = _until(lambda: cli("bedrock", "get-model-customization-job", "--job-identifier", arn),
                 {"Completed", "Failed", "Stopped"})
    assert job["status"] == "Completed", job.get("failureMessage")
    return job, cli("bedrock", "get-custom-model", "--model-identifier", name)


def _shape(name: str):
    import botocore.session

    return botocore.session.get_session().get_service_model("bedrock").shape_for(name)


def _modelled_errors(operation: str) -> set[str]:
    import botocore.session

    op = botocore.session.get_session().get_service_model("bedrock").operation_model(operation)
    return {e.name for e in op.error_shapes}


def _listed(cli, flag: str, arn: str) -> list[str]:
    return sorted(m["modelName"] for m in cli("bedrock", "list-custom-models", flag, arn)["modelSummaries"])


def test_a_continued_fine_tuning_through_the_cli(cli, tmp_path):
    """A fine-tuning job of the base model, then one whose --base-model-identifier is the first job's custom model
    (its ARN as get-custom-model gives it): "You can further fine tune an existing custom model"
    (https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-submit.html). GetCustomModel's
    baseModelArn is a ModelArn in botocore ("Amazon Resource Name (ARN) of the base model", pattern: a custom model's
    or a foundation model's ARN, https://docs.aws.amazon.com/bedrock/latest/APIReference/API_GetCustomModel.html):
    the second model names the first; the job's baseModelArn is a FoundationModelArn and stays the foundation model.
    ListCustomModels: baseModelArnEquals filters on that base model ARN (a custom model's ARN allowed),
    foundationModelArnEquals on the foundation model (a foundation-model ARN only),
    https://docs.aws.amazon.com/bedrock/latest/APIReference/API_ListCustomModels.html."""
    role = _data_and_role(cli, tmp_path)
    _job1, first = _trained(cli, "cli-first", role, BASE)
    assert first["baseModelArn"] == FOUNDATION_ARN, first["baseModelArn"]

    job2, second = _trained(cli, "cli-second", role, first["modelArn"])
    model_arn, fm_arn = _shape("ModelArn").metadata["pattern"], _shape("FoundationModelArn").metadata["pattern"]
    assert second["baseModelArn"] == first["modelArn"], "a custom model of a custom model names its parent"
    assert re.fullmatch(model_arn, second["baseModelArn"]) and not re.fullmatch(fm_arn, second["baseModelArn"])
    assert second["modelArn"] != first["modelArn"] and second["jobArn"] == job2["jobArn"]
    assert second["customizationType"] == "FINE_TUNING" and second["modelStatus"] == "Active"
    assert _shape("GetModelCustomizationJobResponse").members["baseModelArn"].name == "FoundationModelArn"
    assert job2["baseModelArn"] == FOUNDATION_ARN and re.fullmatch(fm_arn, job2["baseModelArn"]), job2["baseModelArn"]
    assert job2["outputModelArn"] == second["modelArn"]

    assert _listed(cli, "--base-model-arn-equals", first["modelArn"]) == ["cli-second"]
    assert _listed(cli, "--base-model-arn-equals", FOUNDATION_ARN) == ["cli-first"]
    assert _listed(cli, "--foundation-model-arn-equals", FOUNDATION_ARN) == ["cli-first", "cli-second"]
    summary = next(m for m in cli("bedrock", "list-custom-models")["modelSummaries"] if m["modelName"] == "cli-second")
    assert summary["baseModelArn"] == first["modelArn"], summary

    # a third generation continues the second: each names its own parent
    _job3, third = _trained(cli, "cli-third", role, second["modelArn"])
    assert third["baseModelArn"] == second["modelArn"]
    assert _listed(cli, "--base-model-arn-equals", second["modelArn"]) == ["cli-third"]


def test_a_continued_customization_is_refused_as_aws_documents(cli, tmp_path):
    """What CreateModelCustomizationJob refuses when its base model is a custom model, each answered with an error
    botocore models for that operation, and no job made: a custom model that does not exist or lives in another
    Region (ResourceNotFoundException: a Bedrock resource is per Region); DISTILLATION from a custom model (the
    student "must be one of the student models paired with your teacher model", a table of foundation models,
    https://docs.aws.amazon.com/bedrock/latest/userguide/prequisites-model-distillation.html; further customization
    is documented for fine-tuning and continued pre-training only, model-customization-submit.html); a type the
    custom model's foundation model does not support (Nova Micro: FINE_TUNING and DISTILLATION, no
    CONTINUED_PRE_TRAINING, https://docs.aws.amazon.com/bedrock/latest/userguide/custom-model-supported.html)."""
    role = _data_and_role(cli, tmp_path)
    _job, first = _trained(cli, "cli-parent", role, BASE)
    account = first["modelArn"].split(":")[4]
    modelled = _modelled_errors("CreateModelCustomizationJob")
    missing = f"arn:aws:bedrock:us-east-1:{account}:custom-model/{BASE}/abcdef012345"
    teacher = json.dumps({"distillationConfig": {"teacherModelConfig": {
        "teacherModelIdentifier": "us.amazon.nova-pro-v1:0", "maxResponseLengthForInference": 1000}}})
    cases = {
        "not found": (_job_args("cli-gone", role, missing), "ResourceNotFoundException"),
        "another Region": (_job_args("cli-west", role, first["modelArn"]) + ["--region", "us-west-2"],
                           "ResourceNotFoundException"),
        "distillation": (_job_args("cli-distil", role, first["modelArn"])[:-2]
                         + ["--customization-type", "DISTILLATION", "--customization-config", teacher],
                         "ValidationException"),
        "another type": (_job_args("cli-cpt", role, first["modelArn"])
                         + ["--customization-type", "CONTINUED_PRE_TRAINING"], "ValidationException"),
    }
    for case, (args, code) in cases.items():
        p = cli(*args, ok=False)
        assert p.returncode == 255 and f"({code})" in p.stderr, (case, p.returncode, p.stderr)
        assert code in modelled, (case, code, modelled)
    # the same DISTILLATION job from the foundation model is accepted: the refusal is the custom model's
    ok = cli(*_job_args("cli-distil-fm", role, BASE)[:-2], "--customization-type", "DISTILLATION",
             "--customization-config", teacher)["jobArn"]
    for region in ("us-east-1", "us-west-2"):
        jobs = cli("bedrock", "list-model-customization-jobs", "--region", region)["modelCustomizationJobSummaries"]
        names = sorted(j["jobName"] for j in jobs)
        assert names == (["cli-distil-fm-job", "cli-parent-job"] if region == "us-east-1" else []), (region, names)
    assert ok.startswith("arn:aws:bedrock:us-east-1:")
    created = [c for c in cli.emu.ledger()["calls"] if c["operation"] == "CreateModelCustomizationJob"]
    assert sorted(c["status"] for c in created) == [201, 201, 400, 400, 404, 404], created


def test_the_price_list_through_the_cli(cli):
    """`aws pricing` (the Price List Query API, always us-east-1) as an operator prices a run by hand
    (https://docs.aws.amazon.com/cli/latest/reference/pricing/get-products.html): the emulator's Bedrock rows."""
    usage = "USE1-Nova2.0Lite-ProvisionedThroughput-NoCommit-ModelUnits"
    out = cli("pricing", "get-products", "--region", "us-east-1", "--service-code", "AmazonBedrock",
              "--filters", f"Type=TERM_MATCH,Field=usagetype,Value={usage}")
    (doc,) = [json.loads(p) for p in out["PriceList"]]
    assert doc["product"]["attributes"]["usagetype"] == usage
    (term,) = doc["terms"]["OnDemand"].values()
    (dim,) = term["priceDimensions"].values()
    assert float(dim["pricePerUnit"]["USD"]) == 60.5 and dim["unit"] == "hour"
    svc = cli("pricing", "describe-services", "--region", "us-east-1", "--service-code", "AmazonBedrock")
    assert "usagetype" in svc["Services"][0]["AttributeNames"]
    vals = cli("pricing", "get-attribute-values", "--region", "us-east-1", "--service-code", "AmazonBedrock",
               "--attribute-name", "regionCode")
    assert {v["Value"] for v in vals["AttributeValues"]} == {"us-east-1", "us-west-2"}
    bad = cli("pricing", "get-products", "--region", "us-east-1", "--service-code", "AmazonNoSuch", ok=False)
    assert bad.returncode == 255 and "(NotFoundException)" in bad.stderr     # CLI v1: 255 on a service error
