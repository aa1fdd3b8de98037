"""Fixtures of the least-privilege tests (issue 20): an emulator that enforces IAM, and identities on it.

- ``iam_lab`` (module): a private emulator with enforcement on (``POST /_emulator/iam``), as an ``IamLab``:
  ``lab.identity(name, documents)`` makes an IAM user with exactly those policy documents (customer managed
  policies) and an access key; ``with lab.acting(identity):`` points boto3 at the emulator with its keys (the
  environment a worker, a subprocess and the watchdog inherit); ``lab.decisions(principal)`` reads the emulator's
  decision log. Everything made as the account root (the dummy ``testing`` keys) is unrestricted.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from tests.support import DUMMY_ENV

ROOT_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class Identity:
    """An IAM user of the emulator's account and the managed policies attached to it."""

    name: str
    arn: str
    key: str
    secret: str
    policy_arns: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret}


class IamLab:
    """An enforcing emulator, its account, and helpers to make identities and read decisions."""

    def __init__(self, emu):
        self.emu = emu
        self.url = emu.url
        self.account = emu.health()["account_id"]
        self.nova_model = ""          # a managed Nova custom model, when a module makes one
        self._n = 0

    # -- plumbing -----------------------------------------------------------------------------
    def _post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def root(self, service: str):
        """A boto3 client as the account root (never restricted)."""
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1", **{
            "aws_access_key_id": ROOT_KEYS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": ROOT_KEYS["AWS_SECRET_ACCESS_KEY"]})

    # -- identities ---------------------------------------------------------------------------
    def identity(self, name: str, documents: list[dict]) -> Identity:
        iam = self.root("iam")
        self._n += 1
        user = f"{name}-{self._n}"
        arn = iam.create_user(UserName=user)["User"]["Arn"]
        ident = Identity(name=user, arn=arn, key="", secret="")
        self.set_policy(ident, documents)
        k = iam.create_access_key(UserName=user)["AccessKey"]
        ident.key, ident.secret = k["AccessKeyId"], k["SecretAccessKey"]
        return ident

    def set_policy(self, ident: Identity, documents: list[dict]) -> None:
        """Replace the identity's policies with exactly ``documents``."""
        iam = self.root("iam")
        for arn in ident.policy_arns:
            iam.detach_user_policy(UserName=ident.name, PolicyArn=arn)
            iam.delete_policy(PolicyArn=arn)
        ident.policy_arns = []
        for doc in documents:
            self._n += 1
            arn = iam.create_policy(PolicyName=f"{ident.name}-p{self._n}",
                                    PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
            iam.attach_user_policy(UserName=ident.name, PolicyArn=arn)
            ident.policy_arns.append(arn)

    @contextmanager
    def acting(self, ident: Identity | None) -> Iterator[None]:
        """The environment of a process running as ``ident`` (None: the root) against the emulator."""
        saved = dict(os.environ)
        os.environ.update(DUMMY_ENV)
        os.environ.update(ident.env() if ident is not None else ROOT_KEYS)
        if ident is not None:
            os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ["AWS_ENDPOINT_URL"] = self.url
        for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            os.environ.pop(k, None)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # -- the decision log ---------------------------------------------------------------------
    def decisions(self, principal: str | None = None) -> list[dict]:
        with urllib.request.urlopen(self.url + "/_emulator/iam", timeout=10) as resp:
            out = json.loads(resp.read())["decisions"]
        return [d for d in out if principal is None or d["principal"] == principal]

    def denied(self, principal: str) -> list[dict]:
        return [d for d in self.decisions(principal) if not d["allowed"]]

    def set_enforcing(self, on: bool) -> None:
        self._post("/_emulator/iam", {"enforce": on})

    # -- state --------------------------------------------------------------------------------
    def alive_serving(self) -> list[str]:
        """ARNs of every provisioned throughput / deployment not deleted (managed or not)."""
        from emulator.testing import alive_serving

        return alive_serving(self.emu.ledger(), managed_only=False)

    def cleanup(self) -> None:
        """As the root: delete every serving resource and stop every running job (quotas are per account)."""
        b = self.root("bedrock")
        for p in b.list_provisioned_model_throughputs()["provisionedModelSummaries"]:
            b.delete_provisioned_model_throughput(provisionedModelId=p["provisionedModelArn"])
        for d in b.list_custom_model_deployments()["modelDeploymentSummaries"]:
            b.delete_custom_model_deployment(customModelDeploymentIdentifier=d["customModelDeploymentArn"])
        for j in b.list_model_customization_jobs(statusEquals="InProgress")["modelCustomizationJobSummaries"]:
            b.stop_model_customization_job(jobIdentifier=j["jobArn"])


@pytest.fixture
def lab_of():
    """``lab_of(emulator_handle)``: an ``IamLab`` over an emulator a test started itself."""
    return IamLab


@pytest.fixture(scope="module")
def iam_lab(tmp_path_factory):
    from emulator.testing import running_emulator

    with running_emulator(speed=20000.0, state_dir=tmp_path_factory.mktemp("iam-lab")) as emu:
        lab = IamLab(emu)
        lab.set_enforcing(True)
        yield lab
