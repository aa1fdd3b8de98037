"""Fuzz the config loader (issue 16): whatever the bytes or the dict, ``load_config`` / ``parse_config`` either
return a PipelineConfig or raise the project's own ``ConfigError`` — never another exception, never a hang."""

from __future__ import annotations

import copy
import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.config import ConfigError, PipelineConfig, load_config, parse_config

BASE = {"name": "t", "base_model": "amazon.titan-text-express-v1:0:8k", "data": {"source": "x.jsonl"}}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

HOSTILE = ["*", "?", "a//b", "../x", "alias/*", "arn:aws:*", ".inf", "nan", "1e999", "\x00", "aws:x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-10**60, max_value=10**60),
                    st.floats(), st.text(max_size=40), st.sampled_from(HOSTILE))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=20)
SECTIONS = ["aws", "serving", "evaluation", "budget", "pricing", "job", "gate", "data", "tags", "rft", "distillation",
            "hyperparameters", "name", "base_model", "customization_type", "preset", "schedule"]
KEYS = ["bucket", "prefix", "kms_key_id", "role_name", "region", "max_hours", "commitment", "allow_commitment",
        "model_units", "bootstrap_samples", "max_usd", "allow_unknown_prices", "grader_lambda_arn", "teacher_model",
        "read_timeout", "timeout_hours", "source", "split", "epochCount", "endpoint_url"]


def _result(fn, *args) -> PipelineConfig | None:
    try:
        cfg = fn(*args)
    except ConfigError as err:
        assert err.problems and all(isinstance(p, str) and p for p in err.problems)
        assert not any("Traceback" in p for p in err.problems)
        return None
    assert isinstance(cfg, PipelineConfig)
    return cfg


@FUZZ
@given(section=st.sampled_from(SECTIONS), key=st.sampled_from(KEYS), value=values)
def test_parse_config_with_a_fuzzed_value_raises_only_config_error(section, key, value):
    raw = copy.deepcopy(BASE)
    node = raw.setdefault(section, {}) if section not in ("name", "base_model", "customization_type", "preset",
                                                          "schedule") else None
    if node is None:
        raw[section] = value
    elif isinstance(node, dict):
        node[key] = value
    cfg = _result(parse_config, raw)
    if cfg is not None:         # whatever got through is finite and wildcard-free where it reaches IAM
        for f in (cfg.serving.max_hours, cfg.aws.read_timeout, cfg.job.timeout_hours):
            assert math.isfinite(f)
        for v in (cfg.aws.prefix, cfg.aws.bucket or "", cfg.aws.kms_key_id or ""):
            assert "*" not in v and "?" not in v


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(SECTIONS + KEYS), values, max_size=6))
def test_parse_config_with_a_fuzzed_document_raises_only_config_error(doc):
    _result(parse_config, {**BASE, **doc})


yaml_texts = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    values.map(lambda v: yaml.safe_dump({**BASE, "x": v})),
    st.lists(st.sampled_from(["name: t\n", "base_model: amazon.titan-text-express-v1:0:8k\n", "data:\n",
                              "  source: x.jsonl\n", "serving:\n", "  max_hours: .inf\n", "  commitment: OneMonth\n",
                              "aws: {prefix: '*'}\n", "&a [*a]\n", "x: &b [1, 2]\n", "y: [*b, *b, *b]\n", "<<: {}\n",
                              "[[[[[[", "? [a]\n: b\n", "\t\n", "--- \n", "%YAML 1.1\n", "!!python/object:os.system\n",
                              "k: !!binary AAAA\n", "d: 2001-13-45\n", "n: 0x" + "f" * 50 + "\n"]), max_size=12)
    .map("".join),
)


@FUZZ
@given(text=yaml_texts)
def test_load_config_with_fuzzed_yaml_raises_only_config_error(text, tmp_path_factory):
    p = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    _result(load_config, p)


@FUZZ
@given(data=st.binary(max_size=400))
def test_load_config_with_fuzzed_bytes_raises_only_config_error(data, tmp_path_factory):
    p = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    p.write_bytes(data)
    _result(load_config, p)


def test_special_files_are_refused_not_read(tmp_path):
    import os

    import pytest

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)               # opened non-blocking and refused: reading it would wait for a writer forever
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (1 << 20) + "\n")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    for path, msg in ((fifo, "not a regular file"), (tmp_path, "is a directory"),
                      ("/dev/zero", "not a regular file"), (tmp_path / "missing.yaml", "file not found"),
                      (big, "a config is at most 1,048,576 bytes"),
                      (latin, f"{latin}:1: not UTF-8 (byte 0xe9): save the config as UTF-8")):
        with pytest.raises(ConfigError) as exc:
            load_config(path)
        assert len(exc.value.problems) == 1 and msg in exc.value.problems[0], exc.value.problems
