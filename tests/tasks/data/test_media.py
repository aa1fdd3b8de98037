"""tasks/data/media.py and the media rules of tasks/data/rules.py: what a multimodal dataset's records reference,
collected for the service role's policy in an exact, bounded form; media outside the run's bucket are located
problems (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.data import media
from tasks.data.media import MediaRefs, entry_cost, folder_of, media_uri_problem
from tasks.data.validate import validate_source

NOVA = "amazon.nova-lite-v1:0:300k"


def _record(*uris: str, video: bool = False) -> dict:
    kind, fmt = ("video", "mp4") if video else ("image", "png")
    blocks = [{"text": "what is this?"}] + [{kind: {"format": fmt, "source": {"s3Location": {"uri": u}}}}
                                            for u in uris]
    return {"schemaVersion": "bedrock-conversation-2024",
            "messages": [{"role": "user", "content": blocks}, {"role": "assistant", "content": [{"text": "a cat"}]}]}


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# -- MediaRefs ------------------------------------------------------------------------------------------------
def test_refs_keep_exact_objects_while_they_fit_and_count_every_reference():
    refs = MediaRefs()
    for uri in ["s3://b1/img/a.png", "s3://b1/img/b.png", "s3://b1/img/a.png", "s3://b1/c.png"]:
        refs.add(uri)
    assert refs.entries() == ["s3://b1/c.png", "s3://b1/img/a.png", "s3://b1/img/b.png"]
    assert refs.references == 4 and refs.fits and not refs.folded
    assert refs.cost == sum(entry_cost(e) for e in refs.entries())


def test_refs_fold_into_their_exact_folders_once_the_objects_no_longer_fit():
    refs = MediaRefs(budget=400)
    uris = [f"s3://b1/set{i % 3}/img-{i:04d}.png" for i in range(30)] + ["s3://b1/at-the-root.png"]
    for u in uris:
        refs.add(u)
    assert refs.folded and refs.fits
    # the folders exactly as the data names them; an object at the root stays exact (no bucket-wide grant)
    assert refs.entries() == ["s3://b1/at-the-root.png", "s3://b1/set0/", "s3://b1/set1/", "s3://b1/set2/"]
    assert refs.references == len(uris)


def test_refs_that_do_not_fit_even_as_folders_stop_growing_and_say_so():
    refs = MediaRefs(budget=300)
    for i in range(1000):
        refs.add(f"s3://b1/one-folder-per-image-{i:05d}/x.png")
    assert not refs.fits and refs.full and refs.references == 1000
    assert len(refs.entries()) * media.ENTRY_OVERHEAD <= 300 + 2 * 60, "memory is bounded by the budget"


def test_entry_cost_bounds_the_arn_in_the_longest_partition():
    for uri in ["s3://b1/k.png", "s3://bucket-name/deep/folder/"]:
        arn = f"arn:aws-us-gov:s3:::{uri[5:]}" + ("*" if uri.endswith("/") else "")
        assert len(json.dumps(arn)) + 1 <= entry_cost(uri)           # quotes + comma


@pytest.mark.parametrize("uri, problem", [
    ("s3://b1", "names a bucket but no object"),
    ("s3://b1/", "names a bucket but no object"),
    ("s3://b1/img/", "names a folder, not an object"),
    ("s3:///img/a.png", "names no bucket"),
    ("s3://Bad_Bucket/a.png", "is not a valid S3 bucket name"),
    ("s3://xn--bucket/a.png", "reserved"),
    ("s3://b1//a.png", "empty folder name"),
    ("s3://b1/a//b.png", "empty folder name"),
])
def test_media_uri_problems(uri, problem):
    assert problem in (media_uri_problem(uri) or "")


def test_a_good_media_uri_has_no_problem_and_its_folder():
    assert media_uri_problem("s3://my-bucket/a/b/c.png") is None
    assert folder_of("s3://my-bucket/a/b/c.png") == "s3://my-bucket/a/b/"
    assert folder_of("s3://my-bucket/c.png") is None


# -- the rules, through validate_source (what forge validate and forge run's pre-flight call) ---------------------
def test_a_dataset_collects_its_media_for_the_role(tmp_path):
    src = _write(tmp_path / "mm.jsonl", [_record(f"s3://media-b/img/{i}.png", "s3://media-b/shared.png")
                                         for i in range(10)])
    report = validate_source(src, NOVA, "fine-tuning")
    assert report.ok, report.lines()
    assert report.stats["media"] == sorted({"s3://media-b/shared.png", *(f"s3://media-b/img/{i}.png"
                                                                         for i in range(10))})
    assert report.stats["media_references"] == 20
    text_only = validate_source(_write(tmp_path / "t.jsonl", [
        {"schemaVersion": "bedrock-conversation-2024", "messages": [
            {"role": "user", "content": [{"text": f"q{i}"}]}, {"role": "assistant", "content": [{"text": "a"}]}]}
        for i in range(10)]), NOVA, "fine-tuning")
    assert "media" not in text_only.stats


def test_media_in_two_buckets_are_located_at_the_first_record_in_the_second(tmp_path):
    recs = [_record(f"s3://media-a/img/{i}.png") for i in range(10)]
    recs[6] = _record("s3://media-a/img/6.png", "s3://media-z/img/6.png")
    report = validate_source(_write(tmp_path / "mm.jsonl", recs), NOVA, "fine-tuning")
    assert [str(p) for p in report.problems] == [
        f"{tmp_path / 'mm.jsonl'}:7: messages[0].content[2].image.source.s3Location.uri: is in bucket 'media-z', "
        "this dataset's earlier media are in 'media-a' (all media of a dataset sit in the one bucket the dataset is "
        "uploaded to (docs/bedrock-facts.md §5): move them into one bucket and set aws.bucket to it)"]


def test_media_outside_the_runs_bucket_are_located_on_every_record(tmp_path):
    recs = [_record(f"s3://media-a/img/{i}.png") for i in range(10)]
    src = _write(tmp_path / "mm.jsonl", recs)
    assert validate_source(src, NOVA, "fine-tuning", media_bucket="media-a").ok
    report = validate_source(src, NOVA, "fine-tuning", media_bucket="run-bucket")
    assert report.total_problems == 10
    assert {(p.line, p.field) for p in report.problems} == {
        (i + 1, "messages[0].content[1].image.source.s3Location.uri") for i in range(10)}
    assert all("not in the run's bucket 'run-bucket' (aws.bucket)" in p.message for p in report.problems)


def test_too_many_media_folders_for_the_role_are_one_file_level_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(media, "MEDIA_BUDGET", 600)
    recs = [_record(f"s3://media-a/folder-{i:04d}/x.png") for i in range(40)]
    report = validate_source(_write(tmp_path / "mm.jsonl", recs), NOVA, "fine-tuning")
    (p,) = report.problems
    assert p.line is None and p.field == "messages"
    assert "more folders than the service role's policy can name" in p.message
    assert report.stats["media"] == []                     # nothing to grant: the run cannot go ahead


def test_video_references_are_collected_too(tmp_path):
    recs = [_record(f"s3://media-a/clips/{i}.mp4", video=True) for i in range(10)]
    report = validate_source(_write(tmp_path / "v.jsonl", recs), NOVA, "fine-tuning")
    assert report.ok, report.lines()
    assert report.stats["media"] == sorted(f"s3://media-a/clips/{i}.mp4" for i in range(10))
