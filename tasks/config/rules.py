"""Rules between a config's sections, checked by ``PipelineConfig`` itself (so a YAML file, ``forge run``'s
pre-flight and a Prefect deployment's parameters get the same ones).

``cross_field_problems(config) -> [(field, message)]``, every rule's problem at once:

- serving mode vs the model family: ``on_demand`` where the family has no on-demand deployment, or not in
  this Region (docs/bedrock-facts.md §2.8);
- model units vs the serving kind: a no-commitment Provisioned Throughput is limited by the account's
  no-commitment model-unit quota (catalog ``quotas``, docs/bedrock-facts.md §2.7) — asking for more fails at
  CreateProvisionedModelThroughput after hours of training;
- a commitment (opted in with ``serving.allow_commitment``) is refused for the evaluation PT: that PT is bought
  and deleted by the run, and a committed PT cannot be deleted before its term ends (docs/bedrock-facts.md §2.7);
- the LLM judge as a gate metric (``gate.metric`` / ``gate.champion_metrics`` ``judge``) without
  ``evaluation.judge``: the gate would fail every run after the money is spent; and ``gate.min_value`` with
  ``judge``: the judge's score is a pairwise comparison (win − loss), there is no absolute value to floor;
- a KMS key ARN in another Region than ``aws.region``: S3 SSE-KMS needs a key in the bucket's Region
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html "the KMS key must be in the
  same Region as the bucket").

The serving kind here is the same decision as ``tasks.run.plan.serving_kind`` (which imports this package, so
the two lines are repeated rather than imported; tests/tasks/config/test_rules.py checks they agree).
"""

from __future__ import annotations

from typing import Any

from tasks.catalog import ModelFamily, load_catalog


def buys_provisioned_throughput(config: Any, family: ModelFamily) -> bool:
    """The run would buy Provisioned Throughput for its evaluation (tasks.run.plan.serving_kind)."""
    mode = config.serving.mode
    if mode == "provisioned":
        kind = "provisioned"
    elif mode == "on_demand":
        kind = "deployment"
    else:
        on_demand = bool(family.on_demand_deployment) and config.aws.region in family.on_demand_regions
        kind = "deployment" if on_demand else "provisioned"
    return kind == "provisioned" and config.evaluation.enabled


def judge_gate_problems(config: Any) -> list[tuple[str, str]]:
    """The judge named as a gate metric where it cannot be one."""
    g = config.gate
    out: list[tuple[str, str]] = []
    fix = ("set evaluation.judge.model (a Bedrock model that judges, e.g. us.amazon.nova-lite-v1:0), or gate on "
           "bertscore_f1, rouge_l, exact_match, accuracy or macro_f1")
    if config.evaluation.judge is None:
        if g.metric == "judge":
            out.append(("gate.metric", f"metric judge needs the LLM judge, and evaluation.judge is not set: {fix}"))
        if "judge" in g.champion_metrics:
            out.append(("gate.champion_metrics", "judge needs the LLM judge, and evaluation.judge is not set: "
                                                 f"{fix}"))
    if g.metric == "judge" and g.min_value is not None:
        out.append(("gate.min_value", "the judge's score is a pairwise comparison of custom with base (win − loss, "
                                      "in [-1, 1]): there is no absolute value to floor; remove gate.min_value "
                                      "(gate.min_delta bounds the score)"))
    return out


def cross_field_problems(config: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = judge_gate_problems(config)
    cat = load_catalog()
    try:
        fam = cat.family_of(config.base_model)
    except ValueError:
        return out         # the rest is reported at base_model by the catalog check
    sv, aws = config.serving, config.aws
    if sv.mode == "on_demand":
        if not fam.on_demand_deployment:
            out.append(("serving.mode", f"{fam.display} custom models cannot be deployed on demand "
                                        "(use mode: provisioned or auto; docs/bedrock-facts.md §2.8)"))
        elif aws.region not in fam.on_demand_regions:
            out.append(("aws.region", f"on-demand deployment of {fam.display} custom models is available in "
                                      f"{', '.join(fam.on_demand_regions) or 'no Region'}, not {aws.region} "
                                      "(change aws.region or use serving.mode: provisioned; "
                                      "docs/bedrock-facts.md §2.8)"))
    buys_pt = buys_provisioned_throughput(config, fam)
    quota = cat.quotas.no_commitment_model_units_per_account
    if buys_pt and sv.commitment is None and quota is not None and sv.model_units > quota:
        out.append(("serving.model_units", f"{sv.model_units} model units: a no-commitment Provisioned "
                                           f"Throughput gets at most {quota} per account by default "
                                           "(docs/bedrock-facts.md §2.7); the evaluation needs 1"))
    if sv.commitment is not None and buys_pt:
        out.append(("serving.commitment", f"a {sv.commitment} commitment on the evaluation Provisioned Throughput: "
                                          "the run deletes that PT when the evaluation ends, and a committed PT "
                                          "cannot be deleted before its term ends (docs/bedrock-facts.md §2.7); "
                                          "remove serving.commitment"))
    key = aws.kms_key_id or ""
    if key.startswith("arn:"):
        key_region = key.split(":")[3]
        if key_region != aws.region:
            out.append(("aws.kms_key_id", f"the key is in {key_region}, the run's bucket in {aws.region}: S3 "
                                          "encrypts with a key of the bucket's Region (use a key in "
                                          f"{aws.region})"))
    return out
