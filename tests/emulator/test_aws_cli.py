"""The emulator against AWS's own command line (issue 17): a client nobody here wrote, with its own request
serialisation, endpoint resolution and error handling. The AWS CLI (v1, pip ``awscli``: the CLI bundles its own
botocore, so it lives in its own venv, ``.venv-awscli/``, made once) drives bucket, role, a customization job, a
provisioned throughput, an invocation and the error shape, as an operator following the Bedrock user guide would
(https://docs.aws.amazon.com/cli/latest/reference/bedrock/ ; .../bedrock-runtime/invoke-model.html)."""

from __future__ import annotations

import json
import os
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
FLOWS = {
    "us-east-1-nova": ("us-east-1", BASE, nova_records(24), "epochCount=1,learningRate=0.00001", NOVA_BODY,
                       lambda a: a["output"]["message"]["content"][0]["text"]),
    "us-west-2-llama-3.1": ("us-west-2", "meta.llama3-1-8b-instruct-v1:0:128k", _llama_records(24),
                            "epochCount=1,learningRate=0.0001", {"prompt": "question number 3 about topic 3",
                                                                 "max_gen_len": 20}, lambda a: a["generation"]),
    "us-west-2-llama-3.3": ("us-west-2", "meta.llama3-3-70b-instruct-v1:0:128k", _llama_records(24),
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
