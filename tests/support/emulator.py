"""Helpers of the emulator's own tests (tests/emulator/): real boto3 clients against a private emulator.

``prepare`` makes a bucket, training data and a service role; ``job_request`` the matching
CreateModelCustomizationJob arguments; ``wait`` polls a Get call to a status; ``code_of`` reads the
error code and HTTP status of a ``pytest.raises(ClientError)``. Fixtures are in tests/emulator/conftest.py.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

SPEED = 20000.0                           # high: job and throughput lifecycles take milliseconds
BASE = "amazon.nova-micro-v1:0:128k"      # docs/bedrock-facts.md §9
PROFILE = "us.amazon.nova-micro-v1:0"     # tasks/catalog/catalog.yaml inference id
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "bedrock.amazonaws.com"},
                                                  "Action": "sts:AssumeRole"}]}


def nova_records(n: int, bad_line: int | None = None, offset: int = 0) -> bytes:
    lines = []
    for i in range(n):
        rec = {"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Answer with the label."}],
               "messages": [{"role": "user",
                             "content": [{"text": f"question number {i + offset} about topic {i % 4}"}]},
                            {"role": "assistant", "content": [{"text": f"label-{i % 4}"}]}]}
        if bad_line is not None and i + 1 == bad_line:
            rec["messages"] = rec["messages"][:1]      # no assistant turn
        lines.append(json.dumps(rec))
    return ("\n".join(lines) + "\n").encode()


def prepare(c, *, train: bytes | None = None, val: bytes | None = b"", get: bool = True, put: bool = True,
            trust: bool = True, upload: bool = True) -> dict:
    """Bucket + data + service role. ``val=b""`` means: upload a default validation file."""
    uid = uuid.uuid4().hex[:10]
    bucket, role = f"emu-{uid}", f"emu-role-{uid}"
    c.s3.create_bucket(Bucket=bucket)
    if upload:
        c.s3.put_object(Bucket=bucket, Key="data/train.jsonl", Body=train if train is not None else nova_records(24))
    if val == b"":
        val = nova_records(8, offset=500)
    if val is not None and upload:
        c.s3.put_object(Bucket=bucket, Key="data/validation.jsonl", Body=val)
    trust_doc = TRUST if trust else {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    arn = c.iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust_doc))["Role"]["Arn"]
    stmts = []
    if get:
        stmts.append({"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                      "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/data/*"]})
    if put:
        stmts.append({"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/out/*"})
    if not stmts:
        stmts.append({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"})
    c.iam.put_role_policy(RoleName=role, PolicyName="data", PolicyDocument=json.dumps({"Version": "2012-10-17",
                                                                                        "Statement": stmts}))
    return {"bucket": bucket, "role_arn": arn, "uid": uid, "has_val": val is not None}


def job_request(inp: dict, **over) -> dict:
    req = dict(jobName=f"job-{inp['uid']}", customModelName=f"model-{inp['uid']}", roleArn=inp["role_arn"],
               baseModelIdentifier=BASE, customizationType="FINE_TUNING",
               trainingDataConfig={"s3Uri": f"s3://{inp['bucket']}/data/train.jsonl"},
               outputDataConfig={"s3Uri": f"s3://{inp['bucket']}/out/"},
               hyperParameters={"epochCount": "2", "learningRate": "0.00001"})
    if inp.get("has_val"):
        req["validationDataConfig"] = {"validators": [{"s3Uri": f"s3://{inp['bucket']}/data/validation.jsonl"}]}
    req.update(over)
    return req


def wait(fn, done: set[str], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        d = fn()
        if (d.get("status") or d.get("modelStatus")) in done:
            return d
        assert time.monotonic() < deadline, f"still {d.get('status')} after {timeout}s"
        time.sleep(0.02)


def code_of(exc: pytest.ExceptionInfo) -> tuple[str, int]:
    e = exc.value.response
    return e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"]

