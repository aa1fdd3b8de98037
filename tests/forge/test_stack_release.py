"""forge/stack.py's stop: the emulator is kept up while serving resources live, a failed ledger read does not end
the wait, and whatever is still alive at the end is deleted by the stack before its emulator stops."""

from __future__ import annotations

import subprocess
import sys

import httpx

from emulator.testing import alive_serving, boto3_clients
from forge import stack
from tests.support.emulator import BASE, wait

MANAGED = [{"key": "managed-by", "value": "bedrock-forge"}]


def _managed_pt(url: str) -> str:
    c = boto3_clients(url)
    arn = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="left", modelId=BASE,
                                                        tags=MANAGED)["provisionedModelArn"]
    wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=arn), {"InService"})
    return arn


def test_a_pt_no_watchdog_deletes_is_deleted_by_the_stack_before_its_emulator_stops(fresh_emulator, capsys):
    arn = _managed_pt(fresh_emulator.url)
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    svc = stack.Service(name="emulator", proc=stand_in, url=fresh_emulator.url)
    stack.stop_all([svc], release_wait_s=1.0)
    assert stand_in.poll() is not None
    assert alive_serving(fresh_emulator.ledger()) == []
    err = capsys.readouterr().err
    assert "the stack deletes them now" in err and arn in err


def test_a_failed_ledger_read_does_not_end_the_wait(fresh_emulator, monkeypatch):
    arn = _managed_pt(fresh_emulator.url)
    real, failures = httpx.get, []

    def flaky(*a, **k):
        if len(failures) < 2:
            failures.append(1)
            raise httpx.ReadTimeout("slow emulator (injected)")
        return real(*a, **k)

    monkeypatch.setattr(httpx, "get", flaky)
    assert stack._wait_serving_released(fresh_emulator.url, 3.0) == [arn], "still alive, not 'released'"
    assert len(failures) == 2


def test_a_ledger_never_read_is_not_reported_as_released_silently(monkeypatch, capsys):
    def down(*a, **k):
        raise httpx.ConnectError("emulator unreachable (injected)")

    monkeypatch.setattr(httpx, "get", down)
    assert stack._wait_serving_released("http://127.0.0.1:9", 1.0) == []
    err = capsys.readouterr().err
    assert "could not be read" in err and "unknown" in err and "forge resources" in err


def test_production_serving_is_not_what_the_stack_waits_for_or_deletes(fresh_emulator, capsys):
    """A promoted champion's serving (forge-role=production) is meant to outlive every run: the stack's stop does
    not wait for it and never deletes it."""
    c = boto3_clients(fresh_emulator.url)
    arn = c.bedrock.create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName="champion", modelId=BASE,
        tags=MANAGED + [{"key": "forge-role", "value": "production"}])["provisionedModelArn"]
    wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=arn), {"InService"})
    assert stack._wait_serving_released(fresh_emulator.url, 1.0) == []
    assert alive_serving(fresh_emulator.ledger(), production=True) == [arn], "still there, still serving"
