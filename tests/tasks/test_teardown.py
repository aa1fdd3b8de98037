"""tasks/teardown.py against the emulator: idempotent, managed-only, by run / flow run / expiry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tasks import serve, teardown
from tasks.aws import tags as aws_tags
from tests.support.aws import alive, trained


def _pt(s, model_arn, tags, suffix: str):
    names = s.names.model_copy(update={"provisioned": f"{s.names.provisioned}-{suffix}", "pt_token": f"tok-{suffix}"})
    cfg = s.config.model_copy(update={"serving": s.config.serving.model_copy(update={"mode": "provisioned"})})
    return serve.provision(s.clients, cfg, names, model_arn, tags)


def _alive(s, arn: str) -> bool:
    return alive(s.clients, arn)


def test_teardown_deletes_serving_model_and_data_and_is_idempotent(env, tmp_path):
    s, model_arn, tags = trained(tmp_path)
    ep = serve.wait_serving(s.clients, serve.provision(s.clients, s.config, s.names, model_arn, tags), timeout_s=60,
                            initial_interval_s=0.2)
    kw = dict(run_key=s.names.run_key, endpoints=[ep], delete_custom_model=True, custom_model_arn=model_arn,
              delete_data=True, uploaded=s.uploaded)
    first = teardown.teardown(s.clients, **kw)
    assert ep.arn in first.deleted and model_arn in first.deleted and s.uploaded.train_uri in first.deleted
    assert first.errors == [] and not _alive(s, ep.arn)
    second = teardown.teardown(s.clients, **kw)
    assert second.deleted == [] and second.errors == []
    assert {ep.arn, model_arn, s.uploaded.train_uri} <= set(second.already_gone)


def test_teardown_keeps_the_custom_model_and_data_by_default(env, tmp_path):
    s, model_arn, tags = trained(tmp_path)
    ep = serve.provision(s.clients, s.config, s.names, model_arn, tags)
    report = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep], custom_model_arn=model_arn,
                               uploaded=s.uploaded)
    assert report.deleted == [ep.arn]
    assert s.clients.bedrock.get_custom_model(modelIdentifier=model_arn)["modelArn"] == model_arn
    assert s.clients.s3.head_object(Bucket=s.uploaded.bucket, Key=s.uploaded.train_uri.split("/", 3)[3])


def test_resources_without_the_managed_tag_are_never_touched(fresh_env, tmp_path):
    s, model_arn, tags = trained(tmp_path)
    theirs = s.clients.bedrock.create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName="someone-elses-pt", modelId=model_arn,
        tags=[{"key": "forge-run-key", "value": s.names.run_key}])["provisionedModelArn"]
    ep = serve.ServingEndpoint(kind="provisioned", arn=theirs, name="someone-elses-pt", model_arn=model_arn)
    report = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep])
    assert report.skipped_unmanaged == [theirs] and report.deleted == []
    swept = teardown.sweep(s.clients, now=datetime.now(UTC) + timedelta(days=365), is_flow_run_terminal=lambda _: True,
                           dry_run=False)
    assert theirs in swept.skipped_unmanaged and theirs not in swept.deleted
    assert _alive(s, theirs)


def test_teardown_run_deletes_only_that_flow_runs_billing_resources(fresh_env, tmp_path):
    s, model_arn, _ = trained(tmp_path)
    mine = _pt(s, model_arn, aws_tags.standard_tags(s.names.run_key, "flow-a", {}, 2), "a")
    other = _pt(s, model_arn, aws_tags.standard_tags(s.names.run_key, "flow-b", {}, 2), "b")
    report = teardown.teardown_run(s.clients, "flow-a")
    assert report.deleted == [mine.arn]
    assert _alive(s, other.arn) and not _alive(s, mine.arn)
    assert teardown.teardown_run(s.clients, "flow-a").deleted == []


def test_sweep_deletes_expired_and_orphaned_resources_only(fresh_env, tmp_path):
    s, model_arn, _ = trained(tmp_path)
    now = datetime.now(UTC)
    expired = _pt(
        s, model_arn, aws_tags.standard_tags(s.names.run_key, "run-live", {}, 1, now=now - timedelta(hours=3)), "x"
    )
    orphan = _pt(s, model_arn, aws_tags.standard_tags(s.names.run_key, "run-dead", {}, 5, now=now), "o")
    terminal = {"run-live": False, "run-dead": True}
    dry = teardown.sweep(s.clients, now=now, is_flow_run_terminal=terminal.get, dry_run=True)
    assert sorted(dry.deleted) == sorted([expired.arn, orphan.arn])
    assert _alive(s, expired.arn) and _alive(s, orphan.arn)           # dry run deletes nothing
    swept = teardown.sweep(s.clients, now=now, is_flow_run_terminal=terminal.get, dry_run=False)
    assert sorted(swept.deleted) == sorted([expired.arn, orphan.arn])
    assert not _alive(s, expired.arn) and not _alive(s, orphan.arn)
    # unknown flow-run state and not yet expired: kept
    kept = _pt(s, model_arn, aws_tags.standard_tags(s.names.run_key, "run-unknown", {}, 5, now=now), "k")
    assert teardown.sweep(s.clients, now=now, is_flow_run_terminal=lambda _: None, dry_run=False).deleted == []
    assert _alive(s, kept.arn)


# -- partial failures ----------------------------------------------------------------------------
def _provisioned(tmp_path):
    s, model_arn, tags = trained(tmp_path, serving={"mode": "provisioned"})
    return s, model_arn, serve.provision(s.clients, s.config, s.names, model_arn, tags)


def test_a_delete_refused_once_is_retried_and_deleted(fresh_env, tmp_path, monkeypatch):
    """Any error class is retried (a delete is idempotent): one AccessDenied does not leave a PT billing."""
    s, _, ep = _provisioned(tmp_path)
    monkeypatch.setattr(teardown, "_sleep", lambda _s: time.sleep(0.05))
    fresh_env.set_faults(
        [{"operation": "DeleteProvisionedModelThroughput", "error": "AccessDeniedException", "count": 1}]
    )
    report = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep])
    assert report.deleted == [ep.arn] and report.errors == [] and report.alive == [] and not _alive(s, ep.arn)


def test_a_delete_that_is_always_refused_is_an_error_and_the_resource_stays_alive(fresh_env, tmp_path, monkeypatch):
    s, _, ep = _provisioned(tmp_path)
    monkeypatch.setattr(teardown, "DELETE_RETRY_S", 0.5)
    monkeypatch.setattr(teardown, "_sleep", lambda _s: time.sleep(0.05))
    fresh_env.set_faults(
        [{"operation": "DeleteProvisionedModelThroughput", "error": "AccessDeniedException", "count": 100000}]
    )
    report = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep])
    assert ep.arn not in report.deleted and ep.arn not in report.already_gone
    (err,) = report.errors
    assert err.startswith(ep.arn) and "AccessDenied" in err and "DeleteProvisionedModelThroughput" in err
    assert report.alive == [ep.arn]
    assert _alive(s, ep.arn)  # still billing, and the report says so
    fresh_env.set_faults([])
    have = aws_tags.bedrock_tags(s.clients, ep.arn)
    again = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[ep])  # a rerun finishes the job
    assert again.deleted == [ep.arn] and again.errors == [] and not _alive(s, ep.arn)
    # gone between the tag read and the delete: already gone, not an error
    late = teardown.TeardownReport()
    teardown.delete_managed(s.clients, ep.arn, late, known_tags=have)
    assert late.already_gone == [ep.arn] and late.errors == [] and late.deleted == []


def test_throttled_deletes_are_retried_then_reported_not_deleted(fresh_env, tmp_path, monkeypatch):
    from tasks.aws.clients import make_clients

    s, _, ep = _provisioned(tmp_path)
    one_shot = make_clients(s.config.aws.model_copy(update={"max_attempts": 1}))  # no botocore retries
    monkeypatch.setattr(teardown, "DELETE_RETRY_S", 0.5)
    monkeypatch.setattr(teardown, "_sleep", lambda _s: time.sleep(0.05))  # short, but no flood of calls
    fresh_env.set_faults(
        [{"operation": "DeleteProvisionedModelThroughput", "error": "ThrottlingException", "count": 100000}]
    )
    report = teardown.teardown(one_shot, run_key=s.names.run_key, endpoints=[ep])
    assert report.deleted == [] and len(report.errors) == 1 and "ThrottlingException" in report.errors[0]
    fresh_env.set_faults(
        [{"operation": "DeleteProvisionedModelThroughput", "error": "ThrottlingException", "count": 2}]
    )
    assert _alive(s, ep.arn)
    monkeypatch.setattr(teardown, "DELETE_RETRY_S", 5.0)
    report = teardown.teardown(one_shot, run_key=s.names.run_key, endpoints=[ep])
    assert report.deleted == [ep.arn] and report.errors == [] and not _alive(s, ep.arn), report


def test_another_runs_resource_is_left_and_a_failed_listing_still_deletes_what_was_given(fresh_env, tmp_path):
    s, model_arn, ep = _provisioned(tmp_path)
    other = _pt(s, model_arn, aws_tags.standard_tags("otherrunkey1", "flow-run-1", {}, 2), "other")
    report = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[other])
    assert other.arn in report.skipped_unmanaged and other.arn not in report.deleted
    assert report.deleted == [ep.arn]  # found by its run-key tag although not passed in
    assert _alive(s, other.arn)
    fresh_env.set_faults(
        [{"operation": "ListProvisionedModelThroughputs", "error": "AccessDeniedException", "count": 1}]
    )
    given = teardown.teardown(s.clients, run_key="otherrunkey1", endpoints=[other])
    assert given.deleted == [other.arn] and not _alive(s, other.arn)
    assert len(given.errors) == 1 and given.errors[0].startswith("listing serving resources")


def test_sweep_decides_by_expiry_then_flow_run_state(monkeypatch):
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)

    def tags(flow_run: str | None, expires: str | None, managed: bool = True) -> dict:
        t = {"managed-by": "bedrock-forge" if managed else "me"}
        if flow_run:
            t["forge-flow-run-id"] = flow_run
        if expires:
            t["forge-expires-at"] = expires
        return t

    past, future = "2026-01-01T11:00:00Z", "2026-01-01T13:00:00Z"
    pt = "arn:aws:bedrock:us-east-1:111122223333:provisioned-model/{}"
    resources = {
        "expired-running": tags("running", past),
        "expired-no-run": tags(None, past),
        "terminal": tags("done", future),
        "running": tags("running", future),
        "unknown": tags("unknown", future),
        "lookup-fails": tags("boom", future),
        "no-tags": tags(None, None),
        "bad-expiry": tags("running", "soon"),
        "unmanaged-expired": tags("done", past, managed=False),
    }
    monkeypatch.setattr(
        teardown, "billing_resources", lambda _c: [("provisioned", pt.format(k), v) for k, v in resources.items()]
    )

    def state(run: str) -> bool | None:
        if run == "boom":
            raise RuntimeError("Prefect API down")
        return {"running": False, "done": True}.get(run)

    report = teardown.sweep(None, now=now, is_flow_run_terminal=state, dry_run=True)  # no AWS call in a dry run
    assert sorted(report.deleted) == sorted(pt.format(k) for k in ("expired-running", "expired-no-run", "terminal"))
    assert report.skipped_unmanaged == [pt.format("unmanaged-expired")] and report.errors == []


def test_sweep_reports_a_failed_listing(monkeypatch):
    def fail(_c):
        raise RuntimeError("no network")

    monkeypatch.setattr(teardown, "billing_resources", fail)
    report = teardown.sweep(None, now=datetime.now(UTC), is_flow_run_terminal=lambda _: True)
    assert report.deleted == [] and report.errors == ["listing serving resources: RuntimeError: no network"]


# -- liveness: the heartbeat decides (issue 15) ------------------------------------------------------------
def test_sweep_verdict_follows_the_heartbeat_whatever_prefect_says():
    from tasks.run.liveness import Heartbeat

    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    future, past = "2026-12-02T14:00:00Z", "2026-12-02T11:00:00Z"
    beats = {"s3://b/fresh": Heartbeat(age_s=15, owner="fr-1"), "s3://b/stale": Heartbeat(age_s=500),
             "s3://b/gone": Heartbeat(age_s=None)}

    def beat(uri):
        if uri == "s3://b/denied":
            raise RuntimeError("AccessDenied")
        return beats[uri]

    def tags(hb=None, flow_run="fr-1", expires=future):
        t = {"managed-by": "bedrock-forge", "forge-flow-run-id": flow_run, "forge-expires-at": expires}
        if hb:
            t["forge-heartbeat"] = hb
        return t

    def verdict(t, terminal=None):
        return teardown.sweep_verdict(t, now=now, heartbeat=beat, is_flow_run_terminal=lambda _r: terminal,
                                      stale_after_s=120)

    assert verdict(tags("s3://b/fresh"), terminal=True)[0] is False, "a live heartbeat wins over a Crashed run"
    assert verdict(tags("s3://b/stale"), terminal=False)[0] is True, "a stale heartbeat wins over 'Running'"
    assert "stale" in verdict(tags("s3://b/stale"))[1]
    assert verdict(tags("s3://b/gone"))[0] is True
    kept, why = verdict(tags("s3://b/denied"))
    assert kept is False and "unreadable" in why, "unknown is not dead"
    assert verdict(tags("s3://b/fresh", expires=past))[0] is True, "expiry is the last net, always"
    assert verdict(tags(None), terminal=True)[0] is True and verdict(tags(None), terminal=None)[0] is False


def test_a_live_run_survives_many_sweeps_and_a_dead_one_is_deleted(fresh_env, tmp_path):
    """A PT whose owner keeps beating is kept by every sweep (with the reason); once the beats stop it goes."""
    from tasks.run import liveness

    s, model_arn, _ = trained(tmp_path)
    bucket, key = liveness.heartbeat_location(s.names.bucket, s.config.aws.prefix, s.names.run_key)
    uri = f"s3://{bucket}/{key}"
    tags = aws_tags.standard_tags(s.names.run_key, "fr-live", {}, 2, heartbeat=uri, run_id="run-1")
    ep = _pt(s, model_arn, tags, "hb")
    with liveness.beating(s.clients.s3, bucket, key, "fr-live", "run-1", interval_s=0.2):
        for _ in range(5):
            rep = teardown.sweep(s.clients, now=datetime.now(UTC), is_flow_run_terminal=lambda _r: True,
                                 stale_after_s=2)
            assert rep.deleted == [] and any("live: heartbeat" in k for k in rep.kept), rep
            time.sleep(0.5)
        assert _alive(s, ep.arn)
    rep = teardown.sweep(s.clients, now=datetime.now(UTC), is_flow_run_terminal=lambda _r: None, stale_after_s=2)
    assert rep.deleted == [ep.arn] and "heartbeat is gone" in rep.reasons[ep.arn] and not _alive(s, ep.arn)


def test_forge_resources_lists_what_bills_with_owner_heartbeat_and_verdict(fresh_env, tmp_path, capsys):
    from forge.cli import main
    from tasks.run import liveness

    s, model_arn, _ = trained(tmp_path)
    bucket, key = liveness.heartbeat_location(s.names.bucket, s.config.aws.prefix, s.names.run_key)
    tags = aws_tags.standard_tags(s.names.run_key, "fr-9", {}, 2, heartbeat=f"s3://{bucket}/{key}",
                                  run_id="banking77-20261202-000000-ab12")
    ep = _pt(s, model_arn, tags, "ls")
    liveness.write_heartbeat(s.clients.s3, bucket, key, "fr-9")
    assert main(["resources", "--endpoint", s.clients.bedrock.meta.endpoint_url]) == 0
    out = capsys.readouterr().out
    assert ep.arn.rsplit("/", 1)[-1] in out and "banking77-20261202-000000-ab12" in out and "fr-9" in out
    assert "keep: live: heartbeat" in out and "123456789012" not in out


def test_production_serving_survives_teardown_hooks_and_sweep_while_the_evaluation_pt_is_deleted(fresh_env, tmp_path):
    """Issue 19: forge-role=production decides, whatever else its tags say (here, adversarially, the run key, the
    flow run, a heartbeat that is gone and an expiry long past — each of which alone gets a PT deleted)."""
    s, model_arn, tags = trained(tmp_path)
    past = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    doomed = {**tags, aws_tags.EXPIRES_TAG: past, aws_tags.HEARTBEAT_TAG: f"s3://{s.names.bucket}/no/such/beat"}
    prod = _pt(s, model_arn, {**doomed, "forge-role": "production", "forge-lineage": s.config.name}, "prod")
    evaluation = _pt(s, model_arn, doomed, "eval")
    rows = {r["arn"]: r for r in teardown.live_billing(s.clients, now=datetime.now(UTC))}
    assert rows[prod.arn]["role"] == "production" and rows[prod.arn]["sweep"].startswith("keep: production serving")
    assert rows[evaluation.arn]["role"] == "run" and rows[evaluation.arn]["sweep"].startswith("delete: expired")
    by_key = teardown.teardown(s.clients, run_key=s.names.run_key, endpoints=[prod])   # even when handed to it
    hooks = teardown.teardown_run(s.clients, flow_run_id="flow-run-1")
    swept = teardown.sweep(s.clients, now=datetime.now(UTC) + timedelta(days=365), is_flow_run_terminal=lambda _: True)
    assert evaluation.arn in by_key.deleted and prod.arn not in by_key.deleted + hooks.deleted + swept.deleted
    assert any(k.startswith(prod.arn) and "production serving" in k for k in by_key.kept)
    assert any(k.startswith(prod.arn) for k in hooks.kept) and any(k.startswith(prod.arn) for k in swept.kept)
    assert _alive(s, prod.arn) and not _alive(s, evaluation.arn)
    report = teardown.TeardownReport()
    teardown.delete_managed(s.clients, prod.arn, report)              # the primitive refuses it too
    assert _alive(s, prod.arn) and report.deleted == []
    teardown.delete_managed(s.clients, prod.arn, report, production=True)   # only the promotion stage retires it
    assert report.deleted == [prod.arn] and not _alive(s, prod.arn)
