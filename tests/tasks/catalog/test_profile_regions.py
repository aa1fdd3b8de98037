"""Catalog.profile_regions: the destination Regions of a cross-Region inference profile, from catalog.yaml."""

from __future__ import annotations

import pytest
import yaml

from tasks.catalog import CATALOG_PATH, Catalog, UnknownProfileError, load_catalog


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


def test_us_nova_profile_routes_to_the_three_us_regions(cat):
    assert cat.profile_regions("us.amazon.nova-pro-v1:0") == ["us-east-1", "us-east-2", "us-west-2"]


def test_profile_arn_is_accepted(cat):
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0"
    assert cat.profile_regions(arn) == ["us-east-1", "us-east-2", "us-west-2"]


def test_destinations_depend_on_the_source_region(cat):
    pid = "us.anthropic.claude-3-haiku-20240307-v1:0"
    assert cat.profile_regions(pid, "us-west-2") == ["us-east-1", "us-west-2"]
    assert cat.profile_regions(pid, "us-east-2") == ["us-east-1", "us-east-2", "us-west-2"]
    assert cat.profile_regions(pid) == ["us-east-1", "us-east-2", "us-west-2"]   # union: what IAM must allow


def test_unlisted_profile_falls_back_to_its_geography(cat):
    assert cat.profile_regions("eu.amazon.nova-lite-v1:0") == sorted(
        ["eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-3"])
    assert "ap-northeast-1" in cat.profile_regions("apac.amazon.nova-micro-v1:0")


@pytest.mark.parametrize("pid", ["amazon.nova-pro-v1:0", "anthropic.claude-3-haiku-20240307-v1:0",
                                 "xx.amazon.nova-pro-v1:0", "amazon.nova-micro-v1:0:128k"])
def test_a_plain_model_id_or_unknown_prefix_is_refused(cat, pid):
    with pytest.raises(UnknownProfileError, match="not a cross-Region inference profile"):
        cat.profile_regions(pid)


def test_global_profile_is_refused_not_guessed(cat):
    with pytest.raises(UnknownProfileError, match="every commercial Region"):
        cat.profile_regions("global.anthropic.claude-sonnet-4-5-20250929-v1:0")


def test_a_source_region_outside_the_profile_is_refused(cat):
    with pytest.raises(UnknownProfileError, match="cannot be called from eu-west-1"):
        cat.profile_regions("us.amazon.nova-pro-v1:0", "eu-west-1")


def test_every_inference_id_profile_in_the_catalog_resolves(cat):
    """Each us./eu./apac. id the pipeline invokes or names as a teacher has destination Regions."""
    ids = [i for f in cat.families.values() for i in f.inference_ids.values()] + cat.distillation_teachers
    profiles = [i for i in ids if i.split(".", 1)[0] in cat.inference_profiles.geographies]
    assert profiles, "the catalog names no profile: this test would prove nothing"
    for pid in profiles:
        assert cat.profile_regions(pid), pid


def test_table_carries_source_and_date():
    raw = yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8"))["inference_profiles"]
    assert raw["source"].startswith("https://docs.aws.amazon.com/bedrock/")
    assert raw["as_of"]


def test_the_table_is_read_from_the_file(tmp_path):
    raw = yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8"))
    raw["inference_profiles"]["profiles"]["us.amazon.nova-pro-v1:0"]["regions"] = ["us-west-2"]
    cat = Catalog.model_validate(raw)
    assert cat.profile_regions("us.amazon.nova-pro-v1:0") == ["us-west-2"]
