"""The model registry of a lineage (issue 19): which custom models a config ``name`` produced, and its champion.

No new service: one JSON document per lineage in the run's bucket,
``s3://<run bucket>/<aws.prefix>/registry/<lineage>/registry.json``, next to the run state (tasks/run/store.py).
It holds every version (custom model ARN, run id, run key, data hashes, metrics, gate verdict, time, status) and
a champion pointer with the champion's production serving (ARN and kind).

Every write is conditional (S3 conditional writes, ``If-Match`` / ``If-None-Match: *``,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html), and the champion switch is a
compare-and-swap on the champion the writer expects: of two runs that both read "champion = A" and try to become
champion, one write lands, the other gets 412, re-reads, sees that the champion is no longer A and raises
``ChampionChanged`` (the caller records itself as a non-champion version). Recording a version re-applies itself
on a conflict, so concurrent writers lose no version.

The custom models carry matching tags (``forge-lineage``, ``forge-version`` = run id): ``tag_custom_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.aws.s3json import PreconditionLost, get_json, put_json
from tasks.aws.s3uri import child_key, s3_uri, split_s3_uri
from tasks.aws.tags import fits_tag_value, to_tag_list
from tasks.run.names import check_run_id

REGISTRY = "registry.json"
MAX_CONFLICTS = 8
LINEAGE_TAG = "forge-lineage"
VERSION_TAG = "forge-version"
ROLE_TAG = "forge-role"
PRODUCTION = "production"

VersionStatus = Literal["candidate", "rejected", "champion", "retired", "not-champion", "rolled-back"]
ServingKind = Literal["provisioned", "deployment"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelVersion(BaseModel):
    """One run's custom model, as the registry records it."""

    run_id: str
    run_key: str
    custom_model_arn: str
    data_hashes: dict[str, str] = Field(default_factory=dict)     # content hash and the split files' sha256
    metrics: dict[str, Any] = Field(default_factory=dict)         # base / custom / comparison (the manifest's)
    gate: dict[str, Any] = Field(default_factory=dict)            # rule, passed (the manifest's)
    recorded_at: str = Field(default_factory=now_iso)
    status: VersionStatus = "candidate"
    note: str | None = None                  # why a status is what it is (lost a race, rolled back, ...)
    replaced: str | None = None              # the champion (run id) this version replaced when it became champion
    serving_arn: str | None = None           # its production serving while it is champion
    serving_kind: ServingKind | None = None

    @property
    def gate_passed(self) -> bool:
        return bool(self.gate.get("passed"))


class Champion(BaseModel):
    run_id: str
    custom_model_arn: str
    serving_arn: str | None = None
    serving_kind: ServingKind | None = None
    since: str = Field(default_factory=now_iso)
    previous: str | None = None              # the champion it replaced (run id): ``forge rollback`` goes there
    previous_serving_arn: str | None = None  # the production serving it replaced (retired after the switch)


class Switch(BaseModel):
    at: str = Field(default_factory=now_iso)
    from_run: str | None = None
    to_run: str
    reason: Literal["promote", "rollback"] = "promote"


class Registry(BaseModel):
    lineage: str
    versions: list[ModelVersion] = Field(default_factory=list)
    champion: Champion | None = None
    switches: list[Switch] = Field(default_factory=list)

    def version(self, run_id: str) -> ModelVersion | None:
        return next((v for v in self.versions if v.run_id == run_id), None)

    def upsert(self, version: ModelVersion) -> None:
        """Add ``version`` or update the recorded one of the same run (its status and note are kept unless the
        new one says more than "candidate": a rerun does not demote a champion)."""
        for i, v in enumerate(self.versions):
            if v.run_id == version.run_id:
                keep = {"status": v.status, "note": v.note, "replaced": v.replaced, "serving_arn": v.serving_arn,
                        "serving_kind": v.serving_kind, "recorded_at": v.recorded_at} \
                    if version.status in ("candidate", "rejected") and v.status not in ("candidate", "rejected") \
                    else {"recorded_at": v.recorded_at}
                self.versions[i] = version.model_copy(update=keep)
                return
        self.versions.append(version)

    def set_status(self, run_id: str, status: VersionStatus, note: str | None = None, **fields: Any) -> None:
        v = self.version(run_id)
        if v is None:
            raise RegistryError(f"lineage {self.lineage}: no version of run {run_id} is recorded")
        i = self.versions.index(v)
        self.versions[i] = v.model_copy(update={"status": status, "note": note, **fields})


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (no such version, unreadable document)."""


class RegistryConflict(PreconditionLost):
    """The registry changed since this writer read it (412), or appeared when it expected none."""


class ChampionChanged(RuntimeError):
    """The champion is no longer the one this writer expected: another promotion (or rollback) won."""

    def __init__(self, expected: str | None, actual: str | None):
        self.expected, self.actual = expected, actual
        super().__init__(f"the champion changed under this promotion: expected {expected or 'none'}, "
                         f"found {actual or 'none'}")


def check_lineage(lineage: str) -> str:
    """A lineage is a config ``name``: lowercase letters, digits and single '-' (tasks/config NAME_PATTERN)."""
    import re

    from tasks.config import NAME_PATTERN

    if not isinstance(lineage, str) or not re.fullmatch(NAME_PATTERN, lineage):
        raise RegistryError(f"lineage {lineage!r} is not a config name (1-32 lowercase letters, digits, single '-')")
    return lineage


@dataclass(frozen=True)
class RegistryStore:
    """The registry document of one lineage in S3."""

    s3: Any
    bucket: str
    key: str

    @classmethod
    def of_lineage(cls, s3: Any, bucket: str, aws_prefix: str, lineage: str) -> RegistryStore:
        """``<aws.prefix>/registry/<lineage>/registry.json`` in the run's bucket."""
        return cls(s3, bucket, child_key(aws_prefix, f"registry/{check_lineage(lineage)}/{REGISTRY}"))

    @classmethod
    def at(cls, s3: Any, uri: str, lineage: str | None = None) -> RegistryStore:
        """From ``s3://bucket/<prefix>/registry/`` (+ ``lineage``) or the document's own address."""
        bucket, key = split_s3_uri(uri)
        if key.endswith(REGISTRY):
            return cls(s3, bucket, key)
        if lineage is None:
            raise RegistryError(f"{uri}: name the lineage, or give the address of its {REGISTRY}")
        key = key if not key or key.endswith("/") else key + "/"
        return cls(s3, bucket, f"{key}{check_lineage(lineage)}/{REGISTRY}")

    @property
    def uri(self) -> str:
        return s3_uri(self.bucket, self.key)

    @property
    def lineage(self) -> str:
        return self.key.rsplit("/", 2)[-2] if "/" in self.key else ""

    def get(self) -> tuple[Registry, str] | None:
        """(registry, ETag), or None when the lineage has none yet."""
        try:
            got = get_json(self.s3, self.bucket, self.key)
            return (Registry.model_validate(got[0]), got[1]) if got else None
        except ValueError as err:
            raise RegistryError(f"{self.uri} is not a registry document: {err}") from None

    def read(self) -> Registry:
        got = self.get()
        return got[0] if got else Registry(lineage=self.lineage)

    def put(self, registry: Registry, etag: str | None) -> str:
        """Write if the document is still at ``etag`` (None: only if there is none); the new ETag."""
        try:
            return put_json(self.s3, self.bucket, self.key, registry.model_dump(mode="json"), etag)
        except PreconditionLost as err:
            raise RegistryConflict(f"{self.uri}: {err}") from err

    def change(self, apply: Callable[[Registry], Registry | None]) -> Registry:
        """Read, ``apply`` (mutates the registry; returns None to write nothing), write conditionally; on a
        conflict read again and re-apply. ``apply`` may raise (e.g. ``ChampionChanged``) to give up."""
        for _ in range(MAX_CONFLICTS):
            got = self.get()
            reg, etag = got if got else (Registry(lineage=self.lineage), None)
            if apply(reg) is None:
                return reg
            try:
                self.put(reg, etag)
                return reg
            except RegistryConflict:
                continue
        raise RegistryConflict(f"{self.uri}: {MAX_CONFLICTS} conflicting writes in a row")


# -- the operations ------------------------------------------------------------------------------------------
def record_version(store: RegistryStore, version: ModelVersion) -> Registry:
    """Record (or update) one run's version; idempotent: a rerun with the same content writes nothing."""
    check_run_id(version.run_id)

    def apply(reg: Registry) -> Registry | None:
        before = reg.model_dump(mode="json")
        reg.upsert(version)
        return None if reg.model_dump(mode="json") == before else reg

    return store.change(apply)


def set_status(store: RegistryStore, run_id: str, status: VersionStatus, note: str | None = None,
               **fields: Any) -> Registry:
    def apply(reg: Registry) -> Registry | None:
        v = reg.version(run_id)
        if v is not None and v.status == status and v.note == note and all(getattr(v, k) == x
                                                                         for k, x in fields.items()):
            return None
        reg.set_status(run_id, status, note, **fields)
        return reg

    return store.change(apply)


def switch_champion(store: RegistryStore, expected: str | None, new: Champion,
                    reason: Literal["promote", "rollback"] = "promote") -> Registry:
    """Make ``new`` the champion if the champion is still ``expected`` (run id, None: no champion yet).

    ``ChampionChanged`` when another writer switched it first; a no-op when ``new`` is already the champion
    (a rerun). The old champion's version becomes ``retired`` (``rolled-back`` on a rollback), the new one's
    ``champion``; the switch is appended to ``switches``."""

    def apply(reg: Registry) -> Registry | None:
        current = reg.champion.run_id if reg.champion else None
        if current == new.run_id:
            return None
        if current != expected:
            raise ChampionChanged(expected, current)
        if reg.version(new.run_id) is None:
            raise RegistryError(f"lineage {reg.lineage}: run {new.run_id} is not a recorded version")
        if current is not None and reg.version(current) is not None:
            reg.set_status(current, "rolled-back" if reason == "rollback" else "retired",
                           f"{reason}: replaced by {new.run_id}", serving_arn=None, serving_kind=None)
        fields: dict[str, Any] = {"serving_arn": new.serving_arn, "serving_kind": new.serving_kind}
        if reason == "promote":
            fields["replaced"] = current
        reg.set_status(new.run_id, "champion", "promoted" if reason == "promote" else "rolled back to", **fields)
        replaced = {"previous_serving_arn": reg.champion.serving_arn if reg.champion else None}
        if reason == "promote":
            replaced["previous"] = current
        reg.champion = new.model_copy(update=replaced)
        reg.switches.append(Switch(from_run=current, to_run=new.run_id, reason=reason))
        return reg

    return store.change(apply)


def is_production(tags: dict[str, str]) -> bool:
    """A lineage's production serving (tasks/promote.py): never torn down or swept (tasks/teardown.py)."""
    return tags.get(ROLE_TAG) == PRODUCTION


def tag_custom_model(clients: Any, custom_model_arn: str, lineage: str, run_id: str) -> None:
    """``forge-lineage`` and ``forge-version`` (= run id) on the custom model, matching its registry entry (only
    when they are not there yet)."""
    from tasks.aws.tags import bedrock_tags

    tags = {LINEAGE_TAG: lineage}
    if fits_tag_value(run_id):
        tags[VERSION_TAG] = run_id
    have = bedrock_tags(clients, custom_model_arn)
    if any(have.get(k) != v for k, v in tags.items()):   # a rerun makes no mutating call
        clients.bedrock.tag_resource(resourceARN=custom_model_arn, tags=to_tag_list(tags))


def version_from_manifest(doc: dict[str, Any], account: str | None = None) -> ModelVersion:
    """The registry entry of a run, from its manifest (tasks/run/manifest.py): run id, run key, the custom model
    (``resources.custom_model``; the manifest redacts account ids, ``account`` puts them back), the data hashes,
    metrics and gate. ``RegistryError`` when the run made no custom model."""
    from tasks.aws.redact import unredact

    arn = (doc.get("resources") or {}).get("custom_model")
    if not arn:
        raise RegistryError(f"run {doc.get('run_id')!r} has no custom model in its manifest (resources.custom_model): "
                            "it did not finish training; rerun it first")
    if account:
        arn = unredact(arn, account)
    data = doc.get("data") or {}
    hashes = {"content": data["content_hash"]} if data.get("content_hash") else {}
    hashes.update({f"{k}_sha256": v for k, v in (data.get("sha256") or {}).items()})
    metrics = {k: v for k, v in (doc.get("metrics") or {}).items() if k in ("base", "custom", "comparison", "champion",
                                                                       "comparison_vs_champion") and v is not None}
    gate = {k: v for k, v in (doc.get("gate") or {}).items() if v is not None}
    passed = gate.get("passed")
    return ModelVersion(run_id=doc["run_id"], run_key=doc.get("run_key") or "", custom_model_arn=arn,
                        data_hashes=hashes, metrics=metrics, gate=gate,
                        status="candidate" if passed or passed is None else "rejected")


def store_for_config(clients: Any, config: Any, account: str | None = None) -> RegistryStore:
    """The registry of ``config.name`` in the run's bucket (``aws.bucket`` or the per-account default one that
    ``upload`` creates, tasks/run/names.py ``default_bucket``)."""
    from tasks.aws.clients import account_id
    from tasks.run.names import default_bucket

    bucket = config.aws.bucket or default_bucket(config.aws.region, account or account_id(clients), config.name)
    return RegistryStore.of_lineage(clients.s3, bucket, config.aws.prefix, config.name)
