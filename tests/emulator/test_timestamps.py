"""Timestamps are never in the future (issue 17): the virtual clock speeds up durations, but every time on the
wire is the real moment it happened, <= the client's clock; ``creationTimeBefore=now`` finds a job just created."""

from __future__ import annotations

from datetime import UTC, datetime

from emulator.clock import VirtualClock
from emulator.testing import boto3_clients
from tests.support.emulator import BASE, job_request, prepare, wait


def _times(d, path="") -> list[tuple[str, datetime]]:
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _times(v, f"{path}.{k}")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _times(v, f"{path}[{i}]")
    elif isinstance(d, datetime):
        out.append((path, d))
    return out


def test_every_reported_time_is_at_most_now_and_filters_use_the_clients_clock(private_emu):
    c = boto3_clients(private_emu.url)
    inp = prepare(c)
    before = datetime.now(UTC)
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    job = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed"})
    pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="ts",
                                                       modelId=job["outputModelArn"])["provisionedModelArn"]
    wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
    responses = [c.bedrock.get_model_customization_job(jobIdentifier=arn),
                 c.bedrock.list_model_customization_jobs(),
                 c.bedrock.get_custom_model(modelIdentifier=job["outputModelArn"]),
                 c.bedrock.list_custom_models(),
                 c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt),
                 c.bedrock.list_provisioned_model_throughputs()]
    now = datetime.now(UTC)
    times = [x for r in responses for x in _times({k: v for k, v in r.items() if k != "ResponseMetadata"})]
    assert len(times) >= 15
    future = [(p, t) for p, t in times if t > now]
    assert future == []
    assert all(t >= before.replace(microsecond=0) for _p, t in times), times
    got = c.bedrock.get_model_customization_job(jobIdentifier=arn)
    assert got["creationTime"] <= got["endTime"] <= now
    # the client's "now" finds the job just created, and "after now" nothing
    listed = c.bedrock.list_model_customization_jobs(creationTimeBefore=now)["modelCustomizationJobSummaries"]
    assert [j["jobArn"] for j in listed] == [arn]
    assert c.bedrock.list_model_customization_jobs(creationTimeAfter=now)["modelCustomizationJobSummaries"] == []
    assert len(c.bedrock.list_provisioned_model_throughputs(creationTimeBefore=now)[
        "provisionedModelSummaries"]) == 1
    # S3 agrees: the metrics file was written after the job was created, and not after its endTime (+ 1 s)
    key = next(o["Key"] for o in c.s3.list_objects_v2(Bucket=inp["bucket"], Prefix="out/")["Contents"]
               if o["Key"].endswith("step_wise_training_metrics.csv"))
    lm = c.s3.head_object(Bucket=inp["bucket"], Key=key)["LastModified"]
    assert got["creationTime"].replace(microsecond=0) <= lm <= now
    assert BASE in job["baseModelArn"]


def test_durations_keep_the_speed_up_but_map_to_the_real_moment():
    c = VirtualClock(speed=100.0, anchor_real=1000.0, anchor_virtual=1000.0)
    assert c.real_of(1000.0 + 7200) == 1072.0            # a 2-hour job ends 72 real seconds later
    c.earlier = [(1000.0, 1000.0, 100.0)]                 # the speed changed at real 1072 (virtual 8200) to 10
    c.anchor_real, c.anchor_virtual, c.speed = 1072.0, 8200.0, 10.0
    assert c.real_of(1000.0 + 3600) == 1036.0            # before the change: the old speed
    assert c.real_of(8200.0 + 100) == 1082.0              # after: the new one
    again = VirtualClock.from_dict(c.to_dict())
    assert again.real_of(1000.0 + 3600) == 1036.0
    assert c.wall(1e12) <= datetime.now(UTC).timestamp()  # a virtual instant still ahead is reported as now
