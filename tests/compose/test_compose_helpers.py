"""The compose test stack's helpers, without Docker: docker/deploy-with-sweep (the test's `deploy` service) and
docker/host-network-config (the merged config made runnable by Compose v1 on the host network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from forge.commands.deploy import load_deployments_file
from tests.support import REPO_ROOT

DEPLOY = REPO_ROOT / "docker" / "deploy-with-sweep"
HOSTNET = REPO_ROOT / "docker" / "host-network-config"
SOURCE = REPO_ROOT / "deployments" / "prefect.yaml"

# a stand-in `forge` on PATH: records its argv and the deployments file it was given
FAKE_FORGE = """#!{py}
import json, sys
args = sys.argv[1:]
path = args[args.index("--file") + 1]
json.dump({{"argv": args, "file": path, "body": open(path).read()}}, open({out!r}, "w"))
"""


def _deploy(tmp_path: Path, env: dict[str, str], *args: str) -> dict:
    out = tmp_path / "forge-call.json"
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "forge"
    fake.write_text(FAKE_FORGE.format(py=sys.executable, out=str(out)))
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k != "FORGE_SWEEP_INTERVAL_S"}
    proc = subprocess.run([sys.executable, str(DEPLOY), *args], capture_output=True, text=True, timeout=60,
                          env={**base, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
                               "FORGE_DEPLOYMENTS_FILE": str(SOURCE), **env})
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(out.read_text()), "stdout": proc.stdout}


def test_without_an_interval_it_is_plain_forge_deploy_apply(tmp_path):
    call = _deploy(tmp_path, {}, "--only", "sweep")
    assert call["argv"] == ["deploy", "--apply", "--file", str(SOURCE), "--only", "sweep"]


def test_the_interval_replaces_only_the_sweep_schedule(tmp_path):
    call = _deploy(tmp_path, {"FORGE_SWEEP_INTERVAL_S": "30"})
    assert call["argv"][:3] == ["deploy", "--apply", "--file"] and call["file"] != str(SOURCE)
    assert "sweep every 30 s" in call["stdout"]
    got, want = yaml.safe_load(call["body"]), yaml.safe_load(SOURCE.read_text())
    by_name = {d["name"]: d for d in got["deployments"]}
    assert by_name["sweep"]["schedules"] == [{"interval": 30.0, "active": True}]
    for d in want["deployments"]:
        if d["name"] != "sweep":
            assert by_name[d["name"]] == d, d["name"]
    assert {k: v for k, v in by_name["sweep"].items() if k != "schedules"} == \
        {k: v for k, v in next(d for d in want["deployments"] if d["name"] == "sweep").items() if k != "schedules"}
    # and forge deploy reads it: the same five deployments, the sweep every 30 s
    spec = load_deployments_file(Path(call["file"]))
    assert spec.get("sweep").schedules[0].interval == 30.0
    assert {d.name for d in spec.deployments} == {d.name for d in load_deployments_file(SOURCE).deployments}


def _hostnet(doc: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HOSTNET)], input=yaml.safe_dump(doc), capture_output=True, text=True,
                          timeout=60)


def test_host_network_services_lose_their_published_ports_and_nothing_else():
    doc = {"version": "3.9",
           "services": {"a": {"image": "x", "network_mode": "host", "ports": ["4200:4200"],
                              "depends_on": {"b": {"condition": "service_healthy"}}},
                        "b": {"image": "y", "ports": ["1:1"]}},
           "volumes": {"v": {}}}
    out = _hostnet(doc)
    assert out.returncode == 0, out.stderr
    got = yaml.safe_load(out.stdout)
    assert "version" not in got                      # read as the Compose Specification (depends_on conditions)
    assert got["services"]["a"] == {"image": "x", "network_mode": "host",
                                    "depends_on": {"b": {"condition": "service_healthy"}}}
    assert got["services"]["b"] == doc["services"]["b"]     # not on the host network: untouched
    assert got["volumes"] == doc["volumes"]


def test_not_a_compose_config_is_refused():
    out = _hostnet({"hello": 1})
    assert out.returncode == 2 and "no services" in out.stderr
