"""The seed guides' manual flow with plain boto3 clients, end to end, against the emulator.

    .venv/bin/python bench/emulator_manual_flow.py                      # starts an emulator itself
    .venv/bin/python bench/emulator_manual_flow.py --endpoint http://127.0.0.1:4566   # or `forge emulator`

upload data -> create role -> create customization job -> poll to Completed -> read the metric files
-> create Provisioned Throughput -> poll to InService -> invoke (InvokeModel + Converse) -> delete.
Nothing here knows it talks to an emulator except the endpoint URL and the dummy credentials.
Prints each step with its real duration and the emulator's billing counters at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import boto3
from botocore.config import Config

BASE_MODEL = "amazon.nova-micro-v1:0:128k"      # docs/bedrock-facts.md §9
BASE_INFERENCE = "us.amazon.nova-micro-v1:0"    # tasks/catalog/catalog.yaml inference id (US inference profile)
REGION = "us-east-1"

TRUST = {"Version": "2012-10-17", "Statement": [{  # docs/bedrock-facts.md §7 (docs)
    "Effect": "Allow", "Principal": {"Service": "bedrock.amazonaws.com"}, "Action": "sts:AssumeRole"}]}

QUESTIONS = [("How do I reset my card PIN?", "card_pin"), ("My card has not arrived yet", "card_arrival"),
             ("I want to top up by bank transfer", "top_up"), ("Why was I charged a fee?", "fees"),
             ("How do I change my address?", "personal_details")]


def records(n: int, offset: int = 0) -> bytes:
    out = []
    for i in range(n):
        q, label = QUESTIONS[(i + offset) % len(QUESTIONS)]
        out.append(json.dumps({
            "schemaVersion": "bedrock-conversation-2024",
            "system": [{"text": "Classify the banking question."}],
            "messages": [{"role": "user", "content": [{"text": f"{q} (case {i + offset})"}]},
                         {"role": "assistant", "content": [{"text": label}]}]}))
    return ("\n".join(out) + "\n").encode()


def poll(fn, done: set[str], what: str, timeout: float = 300.0, interval: float = 0.2) -> dict:
    t0 = time.monotonic()
    while True:
        d = fn()
        status = d.get("status") or d.get("modelStatus")
        if status in done:
            return d
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"timed out waiting for {what} (last status {status})")
        time.sleep(interval)


def run(endpoint: str) -> dict:
    kw = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing",
              config=Config(retries={"mode": "standard", "total_max_attempts": 3}))
    s3, iam, sts = boto3.client("s3", **kw), boto3.client("iam", **kw), boto3.client("sts", **kw)
    bedrock, runtime = boto3.client("bedrock", **kw), boto3.client("bedrock-runtime", **kw)
    timings: dict[str, float] = {}

    def step(name: str, t0: float) -> None:
        timings[name] = round(time.monotonic() - t0, 3)
        print(f"  {name:<28} {timings[name]:7.3f} s", flush=True)

    run_id = uuid.uuid4().hex[:8]
    account = sts.get_caller_identity()["Account"]
    bucket, role_name = f"forge-manual-{run_id}", f"forge-manual-role-{run_id}"

    t0 = time.monotonic()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data/train.jsonl", Body=records(40))
    s3.put_object(Bucket=bucket, Key="data/validation.jsonl", Body=records(10, offset=100))
    step("upload", t0)

    t0 = time.monotonic()
    role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role_name, PolicyName="data", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
             "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/data/*"]},
            {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
             "Resource": f"arn:aws:s3:::{bucket}/output/*"}]}))
    step("create role", t0)

    t0 = time.monotonic()
    job_arn = bedrock.create_model_customization_job(
        jobName=f"manual-{run_id}", customModelName=f"manual-model-{run_id}", roleArn=role_arn,
        baseModelIdentifier=BASE_MODEL, customizationType="FINE_TUNING",
        trainingDataConfig={"s3Uri": f"s3://{bucket}/data/train.jsonl"},
        validationDataConfig={"validators": [{"s3Uri": f"s3://{bucket}/data/validation.jsonl"}]},
        outputDataConfig={"s3Uri": f"s3://{bucket}/output/"},
        hyperParameters={"epochCount": "2", "learningRate": "0.00001"},
        clientRequestToken=f"manual-{run_id}", jobTags=[{"key": "managed-by", "value": "manual-flow"}])["jobArn"]
    job = poll(lambda: bedrock.get_model_customization_job(jobIdentifier=job_arn),
               {"Completed", "Failed", "Stopped"}, "the job")
    if job["status"] != "Completed":
        raise SystemExit(f"job {job['status']}: {job.get('failureMessage')}")
    step("job -> Completed", t0)
    job_id = job_arn.rsplit("/", 1)[1]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="output/").get("Contents", [])]
    assert f"output/model-customization-job-{job_id}/training_artifacts/step_wise_training_metrics.csv" in keys, keys
    model_arn = job["outputModelArn"]

    t0 = time.monotonic()
    pt_arn = bedrock.create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName=f"manual-pt-{run_id}", modelId=model_arn,
        clientRequestToken=f"manual-pt-{run_id}")["provisionedModelArn"]
    poll(lambda: bedrock.get_provisioned_model_throughput(provisionedModelId=pt_arn), {"InService", "Failed"}, "the PT")
    step("PT -> InService", t0)

    t0 = time.monotonic()
    body = {"schemaVersion": "messages-v1", "system": [{"text": "Classify the banking question."}],
            "messages": [{"role": "user", "content": [{"text": "How do I reset my card PIN? (case 7)"}]}],
            "inferenceConfig": {"maxTokens": 20, "temperature": 0.0}}
    custom = json.loads(runtime.invoke_model(modelId=pt_arn, body=json.dumps(body))["body"].read())
    base = json.loads(runtime.invoke_model(modelId=BASE_INFERENCE, body=json.dumps(body))["body"].read())
    conv = runtime.converse(modelId=pt_arn, messages=body["messages"], system=body["system"],
                            inferenceConfig={"maxTokens": 20})
    step("invoke x3", t0)
    print("  custom:", json.dumps(custom)[:160])
    print("  base:  ", json.dumps(base)[:160])
    print("  converse:", conv["output"]["message"]["content"][0]["text"][:80])

    t0 = time.monotonic()
    bedrock.delete_provisioned_model_throughput(provisionedModelId=pt_arn)
    bedrock.delete_custom_model(modelIdentifier=model_arn)
    step("delete PT + model", t0)
    return {"account": account, "timings": timings}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    ap.add_argument("--speed", type=float, default=5000.0, help="speed of the emulator this script starts")
    a = ap.parse_args()
    if a.endpoint:
        result = run(a.endpoint)
        ledger = None
    else:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from emulator.testing import start_subprocess
        t0 = time.monotonic()
        emu = start_subprocess(speed=a.speed)
        print(f"emulator started in {time.monotonic() - t0:.2f} s at {emu.url}")
        try:
            result = run(emu.url)
            ledger = emu.ledger()
        finally:
            emu.terminate()
    if ledger:
        print("billing (virtual):", json.dumps(ledger["billing"]))
        print("calls:", len(ledger["calls"]), "resources:", len(ledger["resources"]))
    print("OK", json.dumps(result["timings"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
