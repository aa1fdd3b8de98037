"""Helpers for the AWS stage tests (tests/tasks/test_{customize,serve,teardown,...}.py): a run set up the
way the flow does it (upload + role) against the emulator, a trained model, ledger queries and
hand-made botocore errors. Fixtures built on these are in tests/tasks/conftest.py."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from tasks import customize, iam, upload
from tasks.aws import clients as aws_clients
from tasks.aws import tags as aws_tags
from tasks.config import PipelineConfig
from tasks.run import names as run_names
from tasks.run.types import PreparedData, SplitFile, UploadedData
from tests.support import DUMMY_ENV

NOVA = "amazon.nova-micro-v1:0:128k"


def conversation_split(path: Path, n: int, seed: str = "") -> SplitFile:
    lines = []
    for i in range(n):
        rec = {"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Classify the request."}],
               "messages": [{"role": "user", "content": [{"text": f"{seed} question {i} about card {i % 3}"}]},
                            {"role": "assistant", "content": [{"text": f"label{i % 3}"}]}]}
        lines.append(json.dumps(rec) + "\n")
    path.write_text("".join(lines))
    data = path.read_bytes()
    return SplitFile(path=str(path), records=n, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


def make_config(name: str, **over) -> PipelineConfig:
    base = {"name": name, "base_model": NOVA, "data": {"source": "data.jsonl"}, "preset": "quick"}
    base.update(over)
    return PipelineConfig.model_validate(base)


@dataclass
class Stage:
    clients: aws_clients.Clients
    config: PipelineConfig
    names: run_names.ResourceNames
    uploaded: UploadedData
    role_arn: str
    tags: dict[str, str]
    account: str


def set_up_run(tmp_path: Path, flow_run_id: str = "flow-run-1", **config_over) -> Stage:
    """Upload + role for a fresh run (unique name), the way the flow does it."""
    name = config_over.pop("name", None) or f"t-{uuid.uuid4().hex[:8]}"
    cfg = make_config(name, **config_over)
    seed = name
    prep = PreparedData(format="bedrock-conversation-2024", report_path=str(tmp_path / "report.json"),
                        train=conversation_split(tmp_path / "train.jsonl", 24, seed),
                        validation=conversation_split(tmp_path / "validation.jsonl", 8, seed + "v"),
                        test=conversation_split(tmp_path / "test.jsonl", 8, seed + "t"))
    clients = aws_clients.make_clients(cfg.aws)
    account = aws_clients.account_id(clients)
    key = run_names.compute_run_key(cfg, prep.content_hash)
    names = run_names.resource_names(cfg, key, account=account)
    tags = aws_tags.standard_tags(key, flow_run_id, {"team": "tests"})
    upload.ensure_bucket(clients, names.bucket, cfg.aws.region, None)
    uploaded = upload.upload(clients, prep, names.bucket, cfg.aws.prefix, key)
    role = iam.ensure_role(clients, cfg, names, uploaded, account, tags)
    return Stage(clients, cfg, names, uploaded, role.role_arn, tags, account)


def trained(tmp_path: Path, **over) -> tuple[Stage, str, dict[str, str]]:
    """A run with a finished job: (stage, custom model ARN, serving tags with an expiry)."""
    s = set_up_run(tmp_path, **over)
    job = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    model_arn = customize.wait_for_job(s.clients, job.job_arn, timeout_s=60, initial_interval_s=0.2).custom_model_arn
    serving_tags = aws_tags.standard_tags(s.names.run_key, "flow-run-1", {},
                                          expires_in_hours=s.config.serving.max_hours)
    return s, model_arn, serving_tags


def creates(ledger: dict, op: str = "CreateModelCustomizationJob") -> list[dict]:
    """The ledger's calls of ``op`` (default: job creates), failed ones included."""
    return [c for c in ledger["calls"] if c["operation"] == op]


def resources_named(ledger: dict, name: str) -> list[dict]:
    return [r for r in ledger["resources"].values() if r["name"] == name]


def alive(clients: aws_clients.Clients, arn: str) -> bool:
    """The PT / deployment ``arn`` is still listed (i.e. still billing)."""
    live = [p["provisionedModelArn"]
            for p in clients.bedrock.list_provisioned_model_throughputs()["provisionedModelSummaries"]]
    live += [d["customModelDeploymentArn"] for d in
             clients.bedrock.list_custom_model_deployments()["modelDeploymentSummaries"]]
    return arn in live


def client_error(code: str, status: int = 400, message: str = "boom",
                 op: str = "CreateModelCustomizationJob") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def use_session_emulator(monkeypatch, aws_env):
    return aws_env


def point_at(monkeypatch, url: str, *unset: str) -> None:
    """boto3 pointed at ``url`` the way a user would (dummy keys, AWS_ENDPOINT_URL; no profile or config file),
    and ``unset`` variables removed, for the test only."""
    for k, v in DUMMY_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", *unset):
        monkeypatch.delenv(k, raising=False)


def use_fresh_emulator(monkeypatch, emu):
    """A private emulator (fault rules, exact ledger counts, jobs that never finish)."""
    for k, v in DUMMY_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", emu.url)
    monkeypatch.setattr(customize, "_sleep", lambda s: None if s <= 0.05 else time.sleep(0.05))
    return emu


def stubbed_clients(region: str = "us-east-1"):
    """(Clients, Stubber) with a real botocore ``bedrock`` client whose calls are answered by the stubber
    (for cases the emulator cannot produce, or exact request checks). The other clients are None."""
    import boto3
    from botocore.stub import Stubber

    bedrock = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name=region).client("bedrock", region_name=region)
    return aws_clients.Clients(s3=None, iam=None, sts=None, bedrock=bedrock, bedrock_runtime=None,
                               region=region), Stubber(bedrock)


def s3_objects(url: str) -> dict[str, str]:
    """Every S3 object on the emulator at ``url``: ``bucket/key`` -> ETag (what changed between two points)."""
    from emulator.testing import boto3_clients

    s3 = boto3_clients(url).s3
    out = {}
    for b in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b["Name"]):
            for o in page.get("Contents") or []:
                out[f"{b['Name']}/{o['Key']}"] = o["ETag"]
    return out


def changed_objects(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k, etag in after.items() if before.get(k) != etag)


@contextmanager
def moto_s3(monkeypatch, bucket: str):
    """An in-process moto S3 with ``bucket`` made, dummy credentials and no endpoint override: the S3 client."""
    import boto3
    from moto import mock_aws

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        yield client
