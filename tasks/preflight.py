"""Live pre-flight: read-only Bedrock checks before anything is created (issue "Today's Bedrock").

``preflight(clients, config)`` calls GetFoundationModel for the base model (and the distillation teacher) in the
configured Region and refuses, before any mutating call, a run AWS would refuse later:

- base model EOL (LEGACY: a warning; refused when the run would buy a new Provisioned Throughput, as AWS does);
- the customization type not in the model's ``customizationsSupported``;
- the Region not one where the model is customizable (the refusal names those Regions, from the catalog);
- a base model id that is not a customizable id (a plain id or an inference profile): the fix names the right id;
- a teacher/student pair AWS does not pair, or a teacher past end of life.

Only read-only calls (GetFoundationModel). No Prefect import. A refusal raises :class:`PreflightRefused`, a
:class:`tasks.config.ConfigError` whose ``problems`` read ``CONFIG:LINE: field: message (fix)``, so the CLI's
ConfigError path prints them and exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tasks.catalog import Catalog, CustomizationType, load_catalog
from tasks.config import ConfigError
from tasks.config.yaml_lines import yaml_line


@dataclass(frozen=True)
class Refusal:
    field: str
    message: str
    fix: str


@dataclass
class PreflightReport:
    """What the pre-flight read: each model's lifecycle status, and warnings that do not stop the run."""

    region: str
    models: dict[str, str] = field(default_factory=dict)       # model id -> lifecycle status
    warnings: list[str] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refusals


class PreflightRefused(ConfigError):
    """The live pre-flight refused the run: ``refusals`` (field, message, fix), ``problems`` formatted lines."""

    def __init__(self, report: PreflightReport, source: str | Path = "config"):
        self.report = report
        self.refusals = list(report.refusals)
        lines = []
        for r in report.refusals:
            line = yaml_line(source, r.field) if Path(str(source)).is_file() else None
            where = f"{source}:{line}" if line else str(source)
            lines.append(f"{where}: {r.field}: {r.message} ({r.fix})")
        super().__init__(lines)


def _bedrock(clients: Any) -> Any:
    return getattr(clients, "bedrock", clients)


def _get_model(bedrock: Any, model_id: str) -> dict | None:
    """GetFoundationModel's ``modelDetails``; None when the Region does not know the model."""
    try:
        return bedrock.get_foundation_model(modelIdentifier=model_id)["modelDetails"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ResourceNotFoundException", "ValidationException"):
            return None
        raise


def _where_customizable(cat: Catalog, model_id: str, ctype: CustomizationType) -> list[str] | None:
    try:
        return cat.customization_regions(model_id, ctype)
    except ValueError:
        return None


def _check_id(cat: Catalog, model_id: str, report: PreflightReport) -> str | None:
    """The customizable id to check, or None (refusal recorded) when ``model_id`` is not one."""
    right = cat.customizable_id(model_id)
    if right == model_id:
        return model_id
    if right is None:
        known = ", ".join(cat.all_model_ids())
        report.refusals.append(Refusal("base_model", f"{model_id!r} is not a customizable base model",
                                       f"use one of: {known}"))
    else:
        kind = "an inference profile" if model_id.split(".", 1)[0] in cat.inference_profiles.geographies \
            else "a plain model id"
        report.refusals.append(Refusal(
            "base_model", f"{model_id!r} is {kind}; CreateModelCustomizationJob takes the customizable id",
            f"write base_model: {right}"))
    return None


def _check_base(cat: Catalog, bedrock: Any, config: Any, buys_pt: bool, report: PreflightReport) -> None:
    mid = _check_id(cat, config.base_model, report)
    if mid is None:
        return
    ctype = CustomizationType.parse(config.customization_type)
    region = report.region
    where = _where_customizable(cat, mid, ctype)
    details = _get_model(bedrock, mid)
    if where is not None and region not in where:
        fix = (f"set aws.region to {' or '.join(where)}" if where
               else f"no Region accepts {ctype.value} for this model now; choose another base_model")
        report.refusals.append(Refusal("aws.region", f"{mid} cannot be customized with {ctype.value} in {region}",
                                       fix))
        return
    if details is None:
        report.refusals.append(Refusal("base_model", f"GetFoundationModel in {region} does not know {mid}",
                                       f"customizable in: {', '.join(where or []) or 'unknown'}"))
        return
    status = (details.get("modelLifecycle") or {}).get("status", "ACTIVE")
    report.models[mid] = status
    if status == "EOL":
        report.refusals.append(Refusal("base_model", f"{mid} has reached end of life in {region}",
                                       "choose an ACTIVE base model (forge validate lists the catalog)"))
        return
    if status == "LEGACY":
        if buys_pt:
            report.refusals.append(Refusal(
                "base_model", f"{mid} is LEGACY in {region}: AWS refuses a new Provisioned Throughput for it",
                "choose an ACTIVE base model, or set evaluation.enabled: false"))
        else:
            report.warnings.append(f"{mid} is LEGACY in {region}: plan a move to an ACTIVE model")
    supported = details.get("customizationsSupported") or []
    if ctype.value not in supported and ctype != CustomizationType.REINFORCEMENT_FINE_TUNING:
        report.refusals.append(Refusal(
            "customization_type", f"{mid} does not support {ctype.value} in {region}",
            f"use one of: {', '.join(supported) or 'none'}"))


def _check_teacher(cat: Catalog, bedrock: Any, config: Any, report: PreflightReport) -> None:
    teacher = config.distillation.teacher_model
    student = cat.customizable_id(config.base_model) or config.base_model
    lifecycle = cat.lifecycle_of(teacher)
    if lifecycle is not None and lifecycle.status_in(report.region) == "EOL":
        when = f" ({lifecycle.eol_date})" if lifecycle.eol_date else ""
        report.refusals.append(Refusal("distillation.teacher_model", f"teacher {teacher} has reached end of life{when}",
                                       _teacher_fix(cat, student)))
        return
    students = cat.distillation_students(teacher)
    if student not in students:
        msg = (f"{teacher} is not a distillation teacher" if not students
               else f"AWS does not pair teacher {teacher} with student {student} (its students: {', '.join(students)})")
        report.refusals.append(Refusal("distillation.teacher_model", msg, _teacher_fix(cat, student)))
        return
    details = _get_model(bedrock, teacher.split(".", 1)[1] if teacher.split(".", 1)[0]
                         in cat.inference_profiles.geographies else teacher)
    status = (details or {}).get("modelLifecycle", {}).get("status")
    if status == "EOL":
        report.refusals.append(Refusal("distillation.teacher_model",
                                       f"teacher {teacher} has reached end of life in {report.region}",
                                       _teacher_fix(cat, student)))
    elif status:
        report.models[teacher] = status


def _teacher_fix(cat: Catalog, student: str) -> str:
    teachers = [p.teacher for p in cat.distillation_pairs if student in p.students
                and not ((lc := cat.lifecycle_of(p.teacher)) is not None and lc.status == "EOL")]
    if teachers:
        return f"teachers for {student}: {', '.join(teachers)}"
    retired = [p.teacher for p in cat.distillation_pairs if student in p.students]
    if retired:     # AWS pairs it, but only with teachers past end of life (e.g. Nova Pro: Nova Premier only)
        return (f"no teacher of {student} is still available ({', '.join(retired)}: end of life); "
                "choose another student model")
    return f"{student} is no distillation student"


def preflight(clients: Any, config: Any, *, buys_pt: bool = False, source: str | Path = "config",
              catalog: Catalog | None = None) -> PreflightReport:
    """Read-only checks of ``config`` against Bedrock in ``config.aws.region``; raise PreflightRefused on a refusal.

    ``clients``: tasks.aws.clients.Clients (or anything with a boto3 ``bedrock`` client, or that client itself).
    ``buys_pt``: the run would buy a new Provisioned Throughput (tasks.config.rules.buys_provisioned_throughput).
    ``source``: the config file, so refusals read ``FILE:LINE: field: message (fix)``.
    """
    cat = catalog or load_catalog()
    bedrock = _bedrock(clients)
    report = PreflightReport(region=config.aws.region)
    _check_base(cat, bedrock, config, buys_pt, report)
    if CustomizationType.parse(config.customization_type) == CustomizationType.DISTILLATION \
            and config.distillation is not None:
        _check_teacher(cat, bedrock, config, report)
    if report.refusals:
        raise PreflightRefused(report, source)
    return report


def preflight_run(clients: Any, config: Any, *, source: str | Path = "config") -> PreflightReport:
    """``preflight`` for the run ``config`` describes: whether it buys a Provisioned Throughput comes from the config
    itself (tasks.config.rules.buys_provisioned_throughput) — what ``forge run``, the flow and ``forge validate
    --live`` all ask."""
    from tasks.config.rules import buys_provisioned_throughput

    cat = load_catalog()
    return preflight(clients, config, source=source, catalog=cat,
                     buys_pt=buys_provisioned_throughput(config, cat.family_of(config.base_model)))
