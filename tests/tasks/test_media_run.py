"""Issue 16, media: a multimodal dataset's images are readable by the run's service role, exactly, and media in
another bucket are refused before anything is created or uploaded. Against the emulator (its S3/IAM are moto's;
its Bedrock checks the records and runs the job), through the stage functions the flow composes:
prepare -> upload -> create-role -> customize -> poll -> release the role's policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks import customize, iam
from tasks import upload as up
from tasks.aws.clients import make_clients
from tasks.aws.errors import StageError
from tasks.aws.tags import standard_tags
from tasks.config import AwsConfig, PipelineConfig
from tasks.data.preparation import prepare
from tasks.data.problems import DataValidationError
from tasks.run.names import compute_run_key, resource_names

BASE = "amazon.nova-lite-v1:0:300k"          # takes images (Micro is text only; docs/bedrock-facts.md §5)


def multimodal_records(path: Path, bucket: str, n: int = 12, folders: int = 2) -> list[str]:
    """``n`` user turns, each with a text and one PNG from ``s3://bucket/media/setK/``; returns the image URIs."""
    uris, lines = [], []
    for i in range(n):
        uri = f"s3://{bucket}/media/set{i % folders}/img-{i:03d}.png"
        uris.append(uri)
        lines.append(json.dumps({"schemaVersion": "bedrock-conversation-2024", "messages": [
            {"role": "user", "content": [{"text": f"What does picture {i} show?"},
                                         {"image": {"format": "png", "source": {"s3Location": {"uri": uri}}}}]},
            {"role": "assistant", "content": [{"text": f"It shows object {i % 3}."}]}]}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return uris


def config(source: Path, bucket: str | None, name: str) -> PipelineConfig:
    aws = {"region": "us-east-1", "prefix": "forge"}
    if bucket:
        aws["bucket"] = bucket
    # 12 records over 3 labels leave no test record (prepare refuses an empty test split an evaluation needs):
    # these runs stop at the upload and the role, so they evaluate nothing
    return PipelineConfig.model_validate({"name": name, "base_model": BASE, "data": {"source": str(source)},
                                          "aws": aws, "preset": "quick", "evaluation": {"enabled": False}})


def test_a_multimodal_run_gets_a_role_that_reads_exactly_its_media_and_releases_it(env, tmp_path):
    clients = make_clients(AwsConfig(region="us-east-1"))
    bucket = "forge-media-run-1"
    clients.s3.create_bucket(Bucket=bucket)
    uris = multimodal_records(tmp_path / "mm.jsonl", bucket)
    for u in uris:                                         # the images sit in the dataset's bucket
        clients.s3.put_object(Bucket=bucket, Key=u.split("/", 3)[3], Body=b"\x89PNG\r\n\x1a\n")
    clients.s3.put_object(Bucket=bucket, Key="media/other/not-in-the-data.png", Body=b"x")
    cfg = config(tmp_path / "mm.jsonl", bucket, "mm-run")

    prepared = prepare(cfg, tmp_path / "prepared")
    assert prepared.media == sorted(set(uris)), "every image the records reference, exactly"
    report = json.loads(Path(prepared.report_path).read_text())
    assert report["media"] == {"references": len(uris), "granted": sorted(set(uris))}

    run_key = compute_run_key(cfg, prepared.content_hash)
    names = resource_names(cfg, run_key, "123456789012")
    up.ensure_bucket(clients, names.bucket, "us-east-1", None)
    uploaded = up.upload(clients, prepared, names.bucket, cfg.aws.prefix, run_key)
    assert uploaded.media == prepared.media
    tags = standard_tags(run_key, "flow-run-mm", {})
    account = clients.sts.get_caller_identity()["Account"]
    role = iam.ensure_role(clients, cfg, names, uploaded, account, tags)

    # the role read back from IAM: GetObject on the run's prefixes and on exactly the records' images
    doc = clients.iam.get_role_policy(RoleName=names.role, PolicyName=iam.policy_name(run_key))["PolicyDocument"]
    doc = doc if isinstance(doc, dict) else json.loads(doc)
    reads = {r for st in doc["Statement"] if "s3:GetObject" in st["Action"] for r in st["Resource"]}
    prefixes = {f"arn:aws:s3:::{bucket}/{uploaded.input_prefix}*", f"arn:aws:s3:::{bucket}/{uploaded.output_prefix}*"}
    assert reads == prefixes | {f"arn:aws:s3:::{u[5:]}" for u in uris}
    assert "arn:aws:s3:::forge-media-run-1/media/other/not-in-the-data.png" not in reads
    values = [v for st in doc["Statement"] for v in (*st["Action"], *st["Resource"])]
    values += [x for st in doc["Statement"] for c in (st.get("Condition") or {}).values() for v in c.values()
               for x in (v if isinstance(v, list) else [v])]
    assert {v for v in values if "*" in v or "?" in v} == prefixes | {f"{uploaded.input_prefix}*",
                                                                       f"{uploaded.output_prefix}*"}

    # the job runs with that role; once it is Completed the run's policy is released, the role stays
    job = customize.start_job(clients, cfg, names, role.role_arn, uploaded, tags)
    result = customize.wait_for_job(clients, job.job_arn, timeout_s=120, max_interval_s=0.2)
    assert result.status == "Completed"
    assert iam.release_run_policy(clients, names.role, run_key, result.status) is True
    assert clients.iam.list_role_policies(RoleName=names.role)["PolicyNames"] == []
    assert clients.iam.get_role(RoleName=names.role)["Role"]["Arn"] == role.role_arn
    # a second run on the same role (the weekly retrain): prune finds that run's job Completed by its name
    other = iam.policy_name(run_key)
    clients.iam.put_role_policy(RoleName=names.role, PolicyName=other, PolicyDocument=json.dumps(doc))
    pruned = iam.prune_role_policies(clients, names.role, keep_run_key="0123456789ab")
    assert pruned.deleted == [other] and pruned.kept == []


def test_media_in_another_bucket_is_a_located_error_at_prepare(tmp_path):
    uris = multimodal_records(tmp_path / "mm.jsonl", "someone-elses-bucket")
    with pytest.raises(DataValidationError) as err:
        prepare(config(tmp_path / "mm.jsonl", "forge-run-bucket", "mm-bad"), tmp_path / "out")
    lines = err.value.lines()
    assert len(lines) == len(uris) and lines[0].startswith(f"{tmp_path / 'mm.jsonl'}:1: messages[0].content[1].image"
                                                           ".source.s3Location.uri: is in bucket "
                                                           "'someone-elses-bucket', not in the run's bucket "
                                                           "'forge-run-bucket' (aws.bucket)")
    assert not (tmp_path / "out").exists()


def test_a_derived_bucket_is_checked_at_upload_before_any_s3_call(fresh_env, tmp_path):
    """No aws.bucket: prepare cannot know the run's bucket (it is named after the account); upload can, and
    refuses before its first call."""
    multimodal_records(tmp_path / "mm.jsonl", "my-media-bucket")
    cfg = config(tmp_path / "mm.jsonl", None, "mm-derived")
    prepared = prepare(cfg, tmp_path / "prepared")                # one bucket: prepare cannot say more
    names = resource_names(cfg, compute_run_key(cfg, prepared.content_hash), "123456789012")
    assert names.bucket != "my-media-bucket"
    clients = make_clients(AwsConfig(region="us-east-1"))
    before = len(fresh_env.ledger()["calls"])
    with pytest.raises(StageError, match="outside the run's bucket") as err:
        up.upload(clients, prepared, names.bucket, cfg.aws.prefix, names.run_key)
    assert err.value.code == "MediaInAnotherBucket"
    assert fresh_env.ledger()["calls"][before:] == [], "refused before any S3 call"
    up.check_media(prepared.media, "my-media-bucket")              # the media's own bucket passes


@pytest.mark.usefixtures("prefect_backend")
def test_forge_run_refuses_media_in_another_bucket_before_any_mutating_call(fresh_emulator, tmp_path, capsys):
    import yaml

    from forge.cli import main

    multimodal_records(tmp_path / "mm.jsonl", "someone-elses-bucket")
    cfg = tmp_path / "mm.yaml"
    cfg.write_text(yaml.safe_dump({"name": "mm-refused", "base_model": BASE, "preset": "quick",
                                   "data": {"source": str(tmp_path / "mm.jsonl")},
                                   "aws": {"bucket": "forge-run-bucket"}}))
    rc = main(["run", str(cfg), "--endpoint", fresh_emulator.url, "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == 2, text[-3000:]
    assert "mm.jsonl:1: messages[0].content[1].image.source.s3Location.uri: is in bucket 'someone-elses-bucket'" \
        in text, text[-3000:]
    assert "Traceback" not in text
    calls = fresh_emulator.ledger()["calls"]
    assert [c["operation"] for c in calls if c["mutating"]] == [], [c["operation"] for c in calls]
