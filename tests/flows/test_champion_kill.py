"""kill -9 of a ``start_from: champion`` run between the registry read and the job create (issue 19 item 4).

The run reads the lineage's champion pointer from its registry in S3 (flows/customize.py ``_start_point``), checks
the model (GetCustomModel), records it in the manifest (``resources.start_from``) and puts it in the run key (so in
the job's name and clientRequestToken); only then come upload, the role and CreateModelCustomizationJob. Here
``forge run`` runs in its own process group and is SIGKILLed (``os.killpg``, as scenarios/faults.py does) while the
emulator holds one request of that window (a ``latency_ms`` fault, ``count: 1``; the rule's ``hits`` says the
request is in the hold). Then the champion pointer is moved to another model (a promotion or ``forge rollback`` in
between), and on-call runs ``forge rerun RUN_ID``. Judged from the emulator (ledger + Bedrock), never from what the
run says about itself:

- ``create``: the kill lands while CreateModelCustomizationJob itself is held: Bedrock makes the job, its answer
  never reaches the run. The rerun adopts that job (same run key: the start point is pinned) and creates none.
- ``role``: the kill lands at CreateRole (upload done, start point pinned, no job yet). The rerun creates one job.
  In both, the job continues from the champion the first attempt read (GetCustomModel's baseModelArn of the job's
  model), not from the champion of the rerun's time.
- ``check``: the kill lands at the champion's GetCustomModel, after the registry read but before anything is
  recorded: nothing is pinned, so the rerun reads the registry again and continues from the *new* champion under
  another run key. One job, nothing half-made; what the code does today (decided right: the first attempt made
  nothing it could duplicate, and a moved pointer — a rollback — is the lineage's current answer).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from emulator.testing import boto3_clients, ledger_calls
from scenarios.harness import DUMMY_ENV, REPO, api_url, manifest_of, pipeline_config, small_config, wait_for
from scenarios.ledger import JOB_TYPE, alive_serving, duplicates
from tests.support.aws import use_fresh_emulator
from tests.support.champion import champion_of, crown, custom_model_of_base

# a machine lost for real (kill -9 of `forge run`): make test-machines, which .ci/run runs after the suite
pytestmark = [pytest.mark.usefixtures("prefect_backend"), pytest.mark.slow, pytest.mark.machines,
              pytest.mark.timeout(900)]

HOLD_MS = 4000                       # long enough to kill inside, short enough that a held create still lands
KILL_AT = {"create": "CreateModelCustomizationJob", "role": "CreateRole", "check": "GetCustomModel"}


@pytest.fixture
def emu(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


def _env() -> dict[str, str]:
    env = {**os.environ, **DUMMY_ENV, "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("AWS_ENDPOINT_URL", None)          # the endpoint travels as --endpoint, as a user types it
    if api_url():
        env["PREFECT_API_URL"] = api_url()
    return env


def _forge(*args: str, url: str, runs: Path) -> list[str]:
    return [sys.executable, "-m", "forge.cli", *args, "--endpoint", url, "--runs-dir", str(runs)]


def _hits(emu) -> int:
    from emulator.testing import _http

    return sum(r["hits"] for r in _http("GET", f"{emu.url}/_emulator/faults")["rules"])


def _run_jobs(ledger: dict) -> list[str]:
    """The jobs the pipeline made (tagged managed-by bedrock-forge; the champions' jobs are plain boto3 ones)."""
    return [a for a, r in ledger["resources"].items()
            if r["type"] == JOB_TYPE and (r.get("tags") or {}).get("managed-by") == "bedrock-forge"]


def _parent_of_job_model(bedrock, job_arn: str) -> str:
    """The custom model the job continued, as Bedrock records it: GetCustomModel's baseModelArn of its model."""
    job = bedrock.get_model_customization_job(jobIdentifier=job_arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    return bedrock.get_custom_model(modelIdentifier=job["outputModelArn"])["baseModelArn"]


@pytest.mark.parametrize("point", list(KILL_AT))
def test_sigkill_between_the_champion_read_and_the_job_create_then_rerun(emu, tmp_path, point):
    name = f"ck-{point}-{uuid.uuid4().hex[:4]}"
    runs, bedrock = tmp_path / "runs", boto3_clients(emu.url).bedrock
    config = small_config(name, start_from="champion")
    cfg = pipeline_config(config)
    model_a = custom_model_of_base(boto3_clients(emu.url), f"{name}-a")
    model_b = custom_model_of_base(boto3_clients(emu.url), f"{name}-b")
    crown(cfg, f"{name}-week1", model_a)
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    mark = len(emu.ledger()["calls"])

    # -- the first attempt, SIGKILLed while the emulator holds the request of the kill point -----------------------
    emu.set_faults([{"operation": KILL_AT[point], "latency_ms": HOLD_MS, "count": 1}])
    log = open(tmp_path / "forge-run.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(_forge("run", str(cfg_path), url=emu.url, runs=runs), env=_env(), cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _hits(emu) >= 1 or proc.poll() is not None, 240, f"{KILL_AT[point]} to be held", step=0.05)
        assert proc.poll() is None, (tmp_path / "forge-run.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)                     # kill -9 of `forge run` and all it started
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
    # the held request is served once the hold ends, its answer going nowhere (for `create`: the lost answer)
    wait_for(lambda: any(c["operation"] == KILL_AT[point] for c in emu.ledger()["calls"][mark:]), 30,
             f"the held {KILL_AT[point]} to be served", step=0.05)
    emu.set_faults([])
    first = manifest_of(runs)
    run_id, calls = first["run_id"], emu.ledger()["calls"][mark:]
    created = [c for c in calls if c["operation"] == "CreateModelCustomizationJob"]
    jobs = _run_jobs(emu.ledger())
    # nothing half-made: at most the job Bedrock accepted (only when the create itself was held), no serving
    assert len(jobs) == (1 if point == "create" else 0), (point, jobs, [c["operation"] for c in calls])
    assert [c["status"] for c in created] == ([201] if point == "create" else []), created
    assert alive_serving(emu.ledger()) == []
    pinned = (first.get("resources") or {}).get("start_from")
    if point == "check":
        assert pinned is None and not first.get("run_key"), "killed before the start point was recorded"
    else:
        assert pinned["champion_run"] == f"{name}-week1" and pinned["model"].rsplit("/", 1)[1] == \
            model_a.rsplit("/", 1)[1], pinned

    # -- meanwhile the champion pointer moves (another week promoted, or a rollback) ------------------------------
    assert crown(cfg, f"{name}-week2", model_b) == f"{name}-week1"

    # -- on-call: forge rerun RUN_ID ----------------------------------------------------------------------------
    mark2 = len(emu.ledger()["calls"])
    t0 = time.monotonic()
    rerun = subprocess.run(_forge("rerun", run_id, url=emu.url, runs=runs), env=_env(), cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    rerun_s = time.monotonic() - t0
    doc = manifest_of(runs, run_id)
    assert rerun.returncode == 0, (rerun.returncode, rerun.stderr[-3000:], doc.get("error"))
    assert doc["status"] == "succeeded", doc.get("error")

    led = emu.ledger()
    ours = {a: led["resources"][a] for a in _run_jobs(led)}
    assert len(ours) == 1, f"exactly one job for the run after kill + rerun: {sorted(r['name'] for r in ours.values())}"
    (job_arn, job), = ours.items()
    assert job["state"] == "Completed" and job["tags"].get("forge-run-key") == doc["run_key"], job
    rerun_creates = ledger_calls({"calls": led["calls"][mark2:]}, "CreateModelCustomizationJob")
    assert len(rerun_creates) == (0 if point == "create" else 1), \
        f"the rerun adopts the job the killed attempt created: {rerun_creates}"
    assert duplicates(led) == [] and alive_serving(led) == []

    expected = model_b if point == "check" else model_a
    assert _parent_of_job_model(bedrock, job_arn) == expected, \
        f"{point}: the job continues {'the new' if point == 'check' else 'the pinned'} champion"
    start = doc["resources"]["start_from"]
    assert start["champion_run"] == (f"{name}-week2" if point == "check" else f"{name}-week1"), start
    from tasks.run.names import compute_run_key

    assert doc["run_key"] == compute_run_key(cfg, doc["data"]["content_hash"], expected)
    assert champion_of(cfg).run_id == f"{name}-week2", "the rerun leaves the pointer where it was moved"
    print(f"\n{point}: rerun {rerun_s:.1f} s, {len(led['calls']) - mark2} calls")
