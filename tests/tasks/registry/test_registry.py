"""tasks/registry: the lineage's record in S3, conditional writes, the champion compare-and-swap."""

from __future__ import annotations

import json

import pytest

from tasks.registry import (
    Champion,
    ChampionChanged,
    ModelVersion,
    RegistryConflict,
    RegistryError,
    RegistryStore,
    record_version,
    set_status,
    switch_champion,
)
from tests.support.aws import moto_s3

BUCKET = "forge-registry-test"


@pytest.fixture
def s3(monkeypatch):
    with moto_s3(monkeypatch, BUCKET) as client:
        yield client


def _version(run_id: str, passed: bool = True) -> ModelVersion:
    return ModelVersion(run_id=run_id, run_key=f"key-{run_id}", custom_model_arn=f"arn:model/{run_id}",
                        data_hashes={"content": f"h-{run_id}"}, metrics={"custom": {"rouge_l": 0.5}},
                        gate={"rule": "r", "passed": passed})


def _champion(run_id: str) -> Champion:
    return Champion(run_id=run_id, custom_model_arn=f"arn:model/{run_id}", serving_arn=f"arn:serving/{run_id}",
                    serving_kind="deployment")


def _store(s3) -> RegistryStore:
    return RegistryStore.of_lineage(s3, BUCKET, "team", "lin")


def test_the_registry_lives_under_the_prefix_per_lineage_and_records_versions(s3):
    store = _store(s3)
    assert store.uri == f"s3://{BUCKET}/team/registry/lin/registry.json" and store.lineage == "lin"
    assert store.get() is None and store.read().versions == []
    record_version(store, _version("r1"))
    record_version(store, _version("r2", passed=False))
    body = json.loads(s3.get_object(Bucket=BUCKET, Key="team/registry/lin/registry.json")["Body"].read())
    assert [v["run_id"] for v in body["versions"]] == ["r1", "r2"]
    assert body["versions"][0]["custom_model_arn"] == "arn:model/r1" and body["champion"] is None
    assert body["versions"][1]["gate"]["passed"] is False


def test_recording_the_same_version_again_writes_nothing(s3):
    store = _store(s3)
    record_version(store, _version("r1"))
    etag = store.get()[1]
    record_version(store, _version("r1").model_copy(update={"recorded_at": "later"}))
    assert store.get()[1] == etag


def test_a_stale_write_is_refused(s3):
    store = _store(s3)
    record_version(store, _version("r1"))
    reg, etag = store.get()
    record_version(store, _version("r2"))
    with pytest.raises(RegistryConflict):
        store.put(reg, etag)
    with pytest.raises(RegistryConflict):   # none expected, one there
        store.put(reg, None)


def test_concurrent_recorders_lose_no_version(s3, monkeypatch):
    store = _store(s3)
    record_version(store, _version("r0"))
    real_put, fired = s3.put_object, []

    def put(**kw):   # another run records its version between this writer's read and its write
        if not fired:
            fired.append(1)
            record_version(store, _version("other"))
        return real_put(**kw)

    monkeypatch.setattr(s3, "put_object", put)
    record_version(store, _version("mine"))
    assert {v.run_id for v in store.read().versions} == {"r0", "other", "mine"}


def test_champion_switch_is_a_compare_and_swap_two_interleaved_writers_one_wins(s3, monkeypatch):
    store = _store(s3)
    for r in ("a", "b"):
        record_version(store, _version(r))
    real_put, fired = s3.put_object, []

    def put(**kw):   # writer A switches between writer B's read (champion none) and B's write
        if not fired:
            fired.append(1)
            switch_champion(store, None, _champion("a"))
        return real_put(**kw)

    monkeypatch.setattr(s3, "put_object", put)
    with pytest.raises(ChampionChanged) as lost:
        switch_champion(store, None, _champion("b"))
    assert lost.value.expected is None and lost.value.actual == "a"
    set_status(store, "b", "not-champion", "lost the champion switch to a")
    reg = store.read()
    assert reg.champion.run_id == "a" and reg.version("a").status == "champion"
    assert reg.version("b").status == "not-champion" and [s.to_run for s in reg.switches] == ["a"]


def test_a_switch_retires_the_old_champion_and_remembers_it_and_a_rerun_is_a_no_op(s3):
    store = _store(s3)
    for r in ("a", "b"):
        record_version(store, _version(r))
    switch_champion(store, None, _champion("a"))
    switch_champion(store, "a", _champion("b"))
    etag = store.get()[1]
    switch_champion(store, "a", _champion("b"))      # a rerun of the same switch
    assert store.get()[1] == etag
    reg = store.read()
    assert reg.champion.run_id == "b" and reg.champion.previous == "a"
    assert reg.version("a").status == "retired" and reg.version("a").serving_arn is None
    assert reg.version("b").replaced == "a" and reg.version("b").serving_arn == "arn:serving/b"
    with pytest.raises(ChampionChanged):              # expecting a champion that is gone
        switch_champion(store, "a", _champion("a"))


def test_a_rerun_recording_a_candidate_does_not_demote_the_champion(s3):
    store = _store(s3)
    record_version(store, _version("a"))
    switch_champion(store, None, _champion("a"))
    record_version(store, _version("a"))
    assert store.read().version("a").status == "champion"


def test_only_recorded_versions_become_champion_and_lineages_are_names(s3):
    store = _store(s3)
    with pytest.raises(RegistryError, match="not a recorded version"):
        switch_champion(store, None, _champion("ghost"))
    with pytest.raises(RegistryError, match="not a config name"):
        RegistryStore.of_lineage(s3, BUCKET, "team", "../x")
    at = RegistryStore.at(s3, f"s3://{BUCKET}/team/registry/", "lin")
    assert at.key == store.key
    with pytest.raises(RegistryError, match="name the lineage"):
        RegistryStore.at(s3, f"s3://{BUCKET}/team/registry/")
