"""Security checks on what a real run leaves behind (issue 9, item 4).

One `forge run` (a subprocess, as a person runs it, with AKIA-shaped credentials in its environment)
against a private emulator; then, read back from the emulator:

- the service role the job ran with: no wildcard action anywhere, every resource inside the run's own
  input/output prefixes (the bucket itself only for ListBucket limited to those prefixes), trust only for
  Bedrock jobs of this account (aws:SourceAccount + aws:SourceArn), no attached managed policy;
- the bucket: public access blocked, default encryption, TLS-only policy, no public grant;
- everything the run printed (stdout/stderr), its Prefect run logs and every file under its run folder:
  none holds the account id, the secret key, the session token or an AKIA/ASIA access key id.

tests/test_iam.py and tests/test_upload.py check the same rules on the stage functions against moto; this
checks the deployed result of the whole flow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import boto3
import pytest
import yaml

from scenarios.harness import small_config
from tests.support import REPO_ROOT

REPO = REPO_ROOT

# AWS's documented example credentials (not real): the access key id has the AKIA shape on purpose
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEForgeSecurityTestSessionToken0123456789abcdef"
KEY_ID_RE = re.compile(rb"\b(AKIA|ASIA)[A-Z0-9]{16}\b")

pytestmark = pytest.mark.usefixtures("prefect_backend")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One whole run on a private emulator; returns what the checks need."""
    from prefect.settings import PREFECT_API_URL

    from emulator.testing import running_emulator

    work = tmp_path_factory.mktemp("security-run")
    # the fault matrix's small run; max_attempts 1 so the injected poll errors reach the flow's own (logged)
    # retry path
    cfg = small_config("sec-check", aws={"max_attempts": 1})
    cfg_path = work / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    with running_emulator(speed=5000.0, state_dir=work / "emulator-state") as emu:
        # transient poll errors: the wait loop logs them with the job ARN (account id inside)
        emu.set_faults([{"operation": "GetModelCustomizationJob", "error": "ServiceUnavailableException", "count": 2}])
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
               "AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_DEFAULT_REGION": "us-east-1",
               "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_API_URL": PREFECT_API_URL.value()}
        for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.pop(k, None)
        out = subprocess.run([sys.executable, "-m", "forge.cli", "run", str(cfg_path), "--endpoint", emu.url,
                              "--runs-dir", str(work / "runs")], env=env, cwd=REPO, capture_output=True,
                             timeout=300)
        clients = {s: boto3.client(s, endpoint_url=emu.url, region_name="us-east-1", aws_access_key_id="testing",
                                   aws_secret_access_key="testing") for s in ("iam", "s3", "sts", "bedrock")}
        account = clients["sts"].get_caller_identity()["Account"]
        (manifest_path,) = (work / "runs").glob("*/manifest.json")
        manifest = json.loads(manifest_path.read_text())
        yield {"out": out, "manifest": manifest, "run_dir": manifest_path.parent, "account": account,
               "clients": clients, "ledger": emu.ledger()}


def test_the_run_succeeded(finished_run):
    out, m = finished_run["out"], finished_run["manifest"]
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:].decode(errors="replace")
    assert m["status"] == "succeeded"
    assert [c for c in finished_run["ledger"]["calls"] if c.get("error") == "ServiceUnavailableException"], \
        "the injected poll errors must have hit"


def _bucket_and_prefixes(m: dict) -> tuple[str, str, str]:
    data = m["resources"]["data"]
    bucket, _, train_key = data["train"].removeprefix("s3://").partition("/")
    _, _, out_key = data["output"].removeprefix("s3://").partition("/")
    return bucket, train_key.rsplit("/", 1)[0] + "/", out_key


def _as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def test_role_the_job_ran_with_is_least_privilege(finished_run):
    m, c, account = finished_run["manifest"], finished_run["clients"], finished_run["account"]
    iam, bedrock = c["iam"], c["bedrock"]
    role_name = m["resources"]["role"].rsplit("/", 1)[-1]
    job = bedrock.get_model_customization_job(jobIdentifier=m["resources"]["job"].replace("<account>", account))
    role = iam.get_role(RoleName=role_name)["Role"]
    assert job["roleArn"] == role["Arn"], "check the role the job actually used"

    # trust: Bedrock only, and only jobs of this account
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Effect"] == "Allow" and trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": account}
    assert trust["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:bedrock:us-east-1:{account}:model-customization-job/*"}

    # permissions: inline only, no wildcard action, every resource inside this run's prefixes
    assert iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"] == []
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    assert names, "the role must carry its permission policy"
    bucket, in_prefix, out_prefix = _bucket_and_prefixes(m)
    bucket_arn = f"arn:aws:s3:::{bucket}"
    allowed_objects = (f"{bucket_arn}/{in_prefix}*", f"{bucket_arn}/{out_prefix}*")
    for name in names:
        doc = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        for st in doc["Statement"]:
            assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st, st
            for action in _as_list(st["Action"]):
                assert "*" not in action, f"wildcard action {action!r} in {name}"
            for res in _as_list(st["Resource"]):
                if res == bucket_arn:   # the bucket itself: listing, limited to the run's prefixes
                    assert _as_list(st["Action"]) == ["s3:ListBucket"], st
                    assert st["Condition"] == {"StringLike": {"s3:prefix": [f"{in_prefix}*", f"{out_prefix}*"]}}
                else:
                    assert res in allowed_objects, f"{res} is outside the run's prefixes {allowed_objects}"
        writes = [s for s in doc["Statement"] if "s3:PutObject" in _as_list(s["Action"])]
        assert all(_as_list(s["Resource"]) == [f"{bucket_arn}/{out_prefix}*"] for s in writes), \
            "the job may write only to its output prefix"


def test_bucket_blocks_public_access_encrypts_and_requires_tls(finished_run):
    s3 = finished_run["clients"]["s3"]
    bucket, _, _ = _bucket_and_prefixes(finished_run["manifest"])
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert pab == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                   "RestrictPublicBuckets": True}
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    deny_plain = [s for s in policy["Statement"] if s["Effect"] == "Deny"
                  and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
    assert deny_plain, "the bucket policy must deny requests not made over TLS"
    (st,) = deny_plain
    assert st["Principal"] == "*" and st["Action"] == "s3:*"
    assert set(_as_list(st["Resource"])) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    assert not [s for s in policy["Statement"] if s["Effect"] == "Allow" and s.get("Principal") in ("*", {"AWS": "*"})]
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    assert not [g for g in grants if "AllUsers" in str(g) or "AuthenticatedUsers" in str(g)]


def _secrets(account: str) -> dict[str, bytes]:
    return {"account id": account.encode(), "secret key": SECRET_KEY.encode(), "session token": SESSION_TOKEN.encode()}


def _leaks(blob: bytes, account: str) -> list[str]:
    found = [what for what, value in _secrets(account).items() if value in blob]
    found += [f"access key id {m.group(0).decode()}" for m in KEY_ID_RE.finditer(blob)]
    return found


def test_output_and_run_logs_hold_no_credentials_or_account_id(finished_run):
    out, account = finished_run["out"], finished_run["account"]
    printed = out.stdout + out.stderr
    assert b"<account>" in printed, "the run's logs must mention ARNs (redacted), or this test checks nothing"
    assert _leaks(printed, account) == [], "forge run printed secrets"

    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    flow_run_id = UUID(finished_run["manifest"]["flow_run_id"])
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    assert logs, "the run's logs must be in the Prefect API"
    api_text = "\n".join(log.message for log in logs).encode()
    assert _leaks(api_text, account) == [], "the Prefect run logs hold secrets"


def test_run_folder_holds_no_credentials_or_account_id(finished_run):
    run_dir, account = finished_run["run_dir"], finished_run["account"]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    for expected in ("manifest.json", "report.md", "summary.json", "examples.csv", "report.json"):
        assert expected in names, f"{expected} missing from the run folder: {sorted(names)}"
    leaks = {str(p.relative_to(run_dir)): found for p in files if (found := _leaks(p.read_bytes(), account))}
    assert leaks == {}, f"files under the run folder hold secrets: {leaks}"
