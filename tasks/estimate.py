"""Cost estimate and the spend guards that refuse a run before it spends money (docs/design.md §3.4).

What is estimated, and how (every figure is an estimate; the lines say which inputs they used):

- **Tokens**: characters / ``limits.chars_per_token`` of the model family — "about 6 characters
  per token" (docs/bedrock-facts.md §5, docs); the Claude 3 Haiku validator counts 3 (docs/bedrock-facts.md §5,
  sample), and the catalog carries that per family. Characters are those of the texts in a record (prompt, completion,
  system, message contents, CPT input), not of the JSON around them.
- **Training**: train tokens × epochs × price per 1k tokens. Epochs come from the resolved
  hyperparameters (preset, then overrides); distillation has no epoch hyperparameter and RFT keeps
  its own, see ``_epochs``.
- **Storage**: one month of custom-model storage (the model exists at least until teardown).
- **Serving** (the evaluation window): provisioned throughput = model units × ``serving.max_hours``
  rounded up to whole hours (billing is hourly, docs/bedrock-facts.md §2.7) × the no-commitment hourly price; a
  commitment term bills the whole term (docs/bedrock-facts.md §2.7): units × the term's hours × ``pricing.
  pt_hour_commitment`` (no catalog figure: unknown, with the term hours in the line).
  On-demand deployment = the test-split tokens at on-demand token prices. The base model is always
  called on demand for the comparison, so its test-split tokens are counted in both modes.
  Output tokens are taken at ``evaluation.max_tokens`` per call: an upper bound.
- **Prices**: ``config.pricing`` overrides field by field; then the AWS Price List when it was read
  (``live_prices``: ``pricing:GetProducts`` for the base model's usage types, read-only, before anything is
  created; the run's spend guard and ``forge estimate --live`` read it, ``budget.live_prices: false`` turns it off);
  then the catalog. The catalog has no confirmed price (all ``null``, ``unconfirmed: true``): such a figure is
  reported as *unknown*, never invented, and the totals that depend on it are ``None``. A Price List figure is used
  only when its unit is one the field is priced in (``_UNITS``); any other answer, an error or no product leaves
  the field to the catalog, with a note.

- **Judge** (issue 19, ``evaluation.judge``): each judged example is asked twice (both orders) per pair —
  challenger vs base, and vs the champion when the lineage has one (counted: an upper bound) — on demand on the
  judge model: input = the judge template and rubric + the example's prompt + two answers at
  ``evaluation.max_tokens`` each, output ≤ ``judge.max_tokens``; priced with ``judge.input_per_1k`` /
  ``output_per_1k`` or the judge model's catalog prices, else *unknown* (said). Cached verdicts (a rerun) cost
  nothing; the estimate does not assume any.
- **Champion** (issue 19, ``production.mode`` on-demand | provisioned): a retrain evaluates the lineage's champion
  too, on the same examples (tasks/evaluation/champion.py ``plan_champion``). Counted as at most the evaluation's
  calls (``evaluation.max_examples``), tokens as for the base model's line — an upper bound: the lineage's first run
  has no champion, and a rerun or an unchanged test split (same sha256 and ``settings_of``) reuses its recorded
  outputs (no calls); the estimate reads no registry, so it cannot know. Priced by the serving that
  ``production_kind`` gives: a custom model deployment is on-demand inference, "you only pay for what you use"
  (https://docs.aws.amazon.com/bedrock/latest/userguide/deploy-custom-model-on-demand.html, docs/bedrock-facts.md
  §2.8), priced here like the base model's on-demand tokens, ``pricing.on_demand_input_per_1k`` /
  ``on_demand_output_per_1k`` (that page points to https://aws.amazon.com/bedrock/pricing/ and no stored copy of it
  has a figure, docs/bedrock-facts.md "Prices": unknown, said); Provisioned Throughput costs 0 at
  the margin (billed hourly whether the evaluation calls it or not, docs/bedrock-facts.md §2.7). Part of
  ``total_usd`` and the budget (``champion_usd``, ``champion_calls``).
- **Production** (issue 19, ``production.mode`` on-demand | provisioned): what the lineage's champion serving
  costs once promoted, in ``CostEstimate.production`` — a standing cost, not part of the run's ``total_usd`` or
  its budget: an on-demand deployment has no hourly bill (calls are priced per token, docs/bedrock-facts.md §2.8);
  Provisioned Throughput = model units × the hourly price, per hour and per month (``HOURS_PER_MONTH``); a
  commitment bills the whole term: units × the term's hours × ``pricing.pt_hour_commitment`` (``term_usd``).
  ``production_cost`` is also what `forge resources` prices a live production serving with.

Verdict: ``over_budget`` when the known part alone exceeds ``budget.max_usd``; else ``unknown_price``
when a price is missing; else ``ok``. ``check_budget`` turns that into a refusal: with ``budget.max_usd``
set, an unknown price refuses the run unless ``budget.allow_unknown_prices: true`` is written out, and
``max_usd: 0`` refuses any run that would spend; a commitment is never bought for the evaluation PT.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.catalog import Catalog, CustomizationType, ModelFamily, load_catalog, resolve_hyperparameters
from tasks.config import PipelineConfig
from tasks.run.plan import model_units, serving_kind
from tasks.run.types import PreparedData

HOURS_PER_MONTH = 730.0          # 8760 h / 12: the usual monthly-hours convention (approximation)
COMMITMENT_MONTHS = {"OneMonth": 1, "SixMonths": 6}   # docs/bedrock-facts.md §2.7 commitmentDuration values (api)
# keys in formatted records that carry structure, not text (docs/bedrock-facts.md §5 record shapes)
_STRUCTURAL_KEYS = {"role", "schemaVersion", "format", "uri", "bucketOwner", "s3Location"}
_OUTPUT_KEYS = {"completion", "reference_answer"}


# ---------------------------------------------------------------------------------------------
# live prices: the AWS Price List (tasks/aws/pricing.py), read before anything is created
# ---------------------------------------------------------------------------------------------
# estimate field -> how the Price List's unit converts into the field's unit (lower-cased units)
_PER_1K = {"1k tokens": 1.0, "1k token": 1.0, "1m tokens": 0.001, "1m token": 0.001}
_PER_HOUR = {"hour": 1.0, "hours": 1.0, "hr": 1.0, "hrs": 1.0}
_UNITS: dict[str, dict[str, float]] = {
    "train_per_1k_tokens": _PER_1K,
    "storage_per_month": {"month": 1.0, "months": 1.0, "model-month": 1.0, "model/month": 1.0, "mo": 1.0},
    "pt_hour_no_commit": _PER_HOUR,
    "pt_hour_OneMonth": _PER_HOUR,
    "pt_hour_SixMonths": _PER_HOUR,
    "on_demand_input_per_1k": _PER_1K,
    "on_demand_output_per_1k": _PER_1K,
    "custom_input_per_1k": _PER_1K,
    "custom_output_per_1k": _PER_1K,
}


@dataclass
class LivePrices:
    """What the Price List said for one base model in one Region: field -> (USD in the field's unit, source)."""

    figures: dict[str, tuple[float, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def get(self, name: str) -> tuple[float, str] | None:
        return self.figures.get(name)


def price_usage_types(config: PipelineConfig, catalog: Catalog | None = None) -> dict[str, str | None]:
    """Estimate field -> the Price List usage type ``live_prices`` asks for it (None: the catalog names none for the
    base model in the run's Region). What the spend guard reads, and so what tasks/permissions.py grants."""
    catalog = catalog or load_catalog()
    return {f: catalog.usage_type(config.base_model, f, config.aws.region) for f in _UNITS}


def live_prices(client: Any, config: PipelineConfig, catalog: Catalog | None = None) -> LivePrices:
    """The base model's prices from the AWS Price List (``client``: a ``pricing`` client, tasks/aws/pricing.py).

    Read-only and free, so allowed before spending. Never raises: a field the Price List does not answer (no
    usage type known for the model or Region, no product, a unit the field is not priced in, AccessDenied,
    throttling, no network) stays with the catalog, and the note says why."""
    from tasks.aws.errors import error_code
    from tasks.aws.pricing import get_price

    out = LivePrices()
    if client is None or not config.budget.live_prices:
        return out
    asked = price_usage_types(config, catalog)
    if not any(asked.values()):
        out.notes.append(f"AWS Price List not read: the catalog has no usage-type name for {config.base_model} in "
                         f"{config.aws.region} (catalog.yaml price_list)")
        return out
    missing: list[str] = []
    for name, usage in asked.items():
        if usage is None:
            continue
        try:
            quote = get_price(client, usage)
        except Exception as err:  # noqa: BLE001 - a price is never worth failing the run over
            out.notes.append(f"AWS Price List not read ({error_code(err) or type(err).__name__}: "
                             f"{str(err)[:400]}); prices from the config and the catalog")
            return out
        if quote is None:
            missing.append(usage)
            continue
        scale = _UNITS[name].get(quote.unit.strip().lower())
        if scale is None:
            out.notes.append(f"AWS Price List: {usage} is priced per {quote.unit!r}, not a unit {name} is "
                             "priced in; not used")
            continue
        out.figures[name] = (quote.usd * scale, quote.source)
    if missing:
        out.notes.append(f"AWS Price List: no single price for {', '.join(missing)}; those prices come from the "
                         "config or the catalog")
    return out


class BudgetExceeded(ValueError):
    """A spend guard refused the run: over budget, unknown prices not allowed, or a capacity cap."""


class ProductionCost(BaseModel):
    """What the production serving of a promoted model costs (see the module docstring)."""

    kind: Literal["provisioned", "deployment"]
    model_units: int | None = None
    commitment: str | None = None
    hourly_usd: float | None = None       # None: a price is unknown
    monthly_usd: float | None = None      # hourly × HOURS_PER_MONTH
    term_hours: float | None = None       # a commitment's term
    term_usd: float | None = None         # the whole term, billed whole
    price_source: str = ""
    detail: str = ""
    unknown: list[str] = Field(default_factory=list)


class CostEstimate(BaseModel):
    train_tokens: int
    epochs: int
    training_usd: float | None
    serving_usd: float | None
    storage_usd: float | None
    total_usd: float | None
    unknown: list[str] = Field(default_factory=list)      # which prices are missing, and where to set them
    lines: list[dict] = Field(default_factory=list)       # one row per cost item (see _line)
    budget_usd: float | None = None
    verdict: Literal["ok", "over_budget", "unknown_price"] = "ok"
    # additions beyond the contract
    known_usd: float = 0.0                                # sum of the items whose price is known
    serving_kind: Literal["provisioned", "deployment", "none"] = "none"
    eval_calls: int = 0                                   # evaluation examples (each called on base and custom)
    chars_per_token: float = 6.0
    method: str = "prepared"                              # prepared | raw (estimate_from_config)
    notes: list[str] = Field(default_factory=list)
    production: ProductionCost | None = None              # production.mode set: the champion's serving (issue 19)
    judge_usd: float | None = 0.0                         # evaluation.judge: the judge's calls (issue 19)
    judge_calls: int = 0
    champion_usd: float | None = 0.0                      # production.mode set: the champion's calls, at most
    champion_calls: int = 0                               # (issue 19; 0 when production.mode is none)

    def summary_line(self) -> str:
        def usd(x: float | None) -> str:
            return "unknown" if x is None else f"${x:,.2f}"

        budget = "no budget" if self.budget_usd is None else f"budget {usd(self.budget_usd)}"
        total = usd(self.total_usd)
        if self.total_usd is None and self.known_usd:
            total += f" (known part {usd(self.known_usd)})"
        line = (f"{self.train_tokens:,} train tokens × {self.epochs} epoch(s); training {usd(self.training_usd)}, "
                f"storage {usd(self.storage_usd)}, serving {usd(self.serving_usd)}"
                + (f", judge {usd(self.judge_usd)} ({self.judge_calls} calls at most)" if self.judge_calls else "")
                + (f", champion {usd(self.champion_usd)} ({self.champion_calls} calls at most)"
                   if self.champion_calls else "")
                + f"; total {total}; {budget}: {self.verdict}")
        p = self.production
        if p is not None:
            if p.kind == "deployment":
                line += "; production if promoted: on-demand deployment, no hourly bill (per-call token prices)"
            else:
                line += (f"; production if promoted: {p.model_units} MU provisioned, {usd(p.hourly_usd)}/h, "
                         f"{usd(p.monthly_usd)}/month")
                if p.commitment:
                    line += f", {p.commitment} term {usd(p.term_usd)} billed whole"
        return line


# ---------------------------------------------------------------------------------------------
# token counting
# ---------------------------------------------------------------------------------------------
def record_chars(record: Any) -> tuple[int, int]:
    """(input characters, output characters) of one formatted record, in any catalog format.

    Output = assistant turns, ``completion`` and ``reference_answer``; everything else textual is input.
    """
    inp = out = 0

    def walk(node: Any, is_output: bool) -> None:
        nonlocal inp, out
        if isinstance(node, str):
            if is_output:
                out += len(node)
            else:
                inp += len(node)
        elif isinstance(node, list):
            for item in node:
                walk(item, is_output)
        elif isinstance(node, dict):
            role_out = is_output or node.get("role") == "assistant"
            for k, v in node.items():
                if k in _STRUCTURAL_KEYS:
                    continue
                walk(v, role_out or k in _OUTPUT_KEYS)

    walk(record, False)
    return inp, out


def _iter_jsonl(path: str | Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue   # validation reports it; the estimate only counts what it can read


def file_chars(path: str | Path) -> tuple[int, int, int]:
    """Stream a formatted JSONL file: (records, input chars, output chars)."""
    n = i = o = 0
    for rec in _iter_jsonl(path):
        a, b = record_chars(rec)
        n, i, o = n + 1, i + a, o + b
    return n, i, o


def tokens(chars: int | float, chars_per_token: float) -> int:
    """The documented approximation: characters / chars-per-token, rounded up (docs/bedrock-facts.md §5)."""
    return int(math.ceil(chars / chars_per_token)) if chars > 0 else 0


# ---------------------------------------------------------------------------------------------
# the pieces of an estimate
# ---------------------------------------------------------------------------------------------
def _epochs(config: PipelineConfig, notes: list[str]) -> int:
    ct = config.customization_type
    if ct == CustomizationType.REINFORCEMENT_FINE_TUNING:
        ep = (config.rft.hyperparameters.get("epochCount") if config.rft else None)
        if ep is None:
            notes.append("RFT: no epochCount in rft.hyperparameters; counted as 1 epoch "
                         "(the service default is not in REF)")
            return 1
        return int(float(ep))
    spec = load_catalog().spec(config.base_model, ct)
    if "epochCount" not in spec.hyperparameters:
        notes.append(f"{ct.value}: the epochs are chosen by the service (no epochCount hyperparameter); counted as 1")
        return 1
    hp = resolve_hyperparameters(spec, config.preset, config.hyperparameters)  # raises ValueError on a bad value
    return int(hp["epochCount"])


def _catalog_price(family: ModelFamily, field: str) -> tuple[float | None, str]:
    value = getattr(family.pricing, field)
    if value is None:
        return None, "unknown"
    return float(value), "catalog (unconfirmed)" if family.pricing.unconfirmed else "catalog"


def _price(pricing: Any, family: ModelFamily, field: str, live: LivePrices | None = None) -> tuple[float | None, str]:
    """(USD, source) of ``field``: ``pricing`` (the config's ``PricingOverride``, or None), then the Price List
    (``live``), then the catalog; (None, "unknown") when none has it."""
    override = getattr(pricing, field, None) if pricing is not None else None
    if override is not None:
        return float(override), "config.pricing"
    if live is not None and (hit := live.get(field)) is not None:
        return hit
    return _catalog_price(family, field)


def _commitment_price(pricing: Any, commitment: str, live: LivePrices | None) -> tuple[float | None, str]:
    """(USD per model-unit hour, source) under ``commitment``'s term: ``pricing.pt_hour_commitment``, then the Price
    List's figure for the term; the catalog has none."""
    override = getattr(pricing, "pt_hour_commitment", None) if pricing is not None else None
    if override is not None:
        return float(override), "config.pricing"
    hit = live.get(f"pt_hour_{commitment}") if live is not None else None
    return hit or (None, "unknown")


def _line(item: str, quantity: float, unit: str, price: float | None, price_unit: str, source: str,
          detail: str = "", usd: float | None = None, **extra: float | None) -> dict:
    if usd is None and price is not None:
        usd = quantity * price
    return {"item": item, "quantity": quantity, "unit": unit, "unit_price": price, "price_unit": price_unit,
            "price_source": source, "usd": None if usd is None else round(usd, 6), "detail": detail, **extra}


_PRICE_FIELDS = {
    "train_per_1k_tokens": "training price per 1k tokens",
    "storage_per_month": "custom-model storage price per month",
    "pt_hour_no_commit": "provisioned throughput price per model-unit hour (no commitment)",
    "on_demand_input_per_1k": "on-demand input price per 1k tokens",
    "on_demand_output_per_1k": "on-demand output price per 1k tokens",
}


def _unknown(field: str) -> str:
    return f"{_PRICE_FIELDS[field]}: no confirmed figure in the catalog (set pricing.{field} in the config)"


def _sum(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(sum(values), 6)  # type: ignore[arg-type]


ServingKind = Literal["provisioned", "deployment", "none"]
Verdict = Literal["ok", "over_budget", "unknown_price"]


@dataclass
class _Ledger:
    """What an estimate accumulates, in order: the cost lines, the missing prices, the notes."""
    lines: list[dict] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    live: LivePrices | None = None

    def add(self, line: dict) -> float | None:
        """Record one cost line; its ``usd`` (None when a price is unknown)."""
        self.lines.append(line)
        return line["usd"]


@dataclass(frozen=True)
class _EvalTokens:
    """The on-demand tokens of ``calls`` evaluation calls, and their prices."""
    calls: int
    in_tok: int
    out_tok: int
    p_in: float | None
    src_in: str
    p_out: float | None
    src_out: str


def _training_cost(config: PipelineConfig, family: ModelFamily, t_tokens: int, epochs: int,
                   ledger: _Ledger) -> float | None:
    p, src = _price(config.pricing, family, "train_per_1k_tokens", ledger.live)
    if p is None:
        ledger.unknown.append(_unknown("train_per_1k_tokens"))
    training = ledger.add(_line("training", t_tokens * epochs / 1000, "1k token-epochs", p, "per 1k tokens", src,
                                f"{t_tokens:,} tokens × {epochs} epoch(s)"))
    if config.customization_type == CustomizationType.DISTILLATION:
        ledger.notes.append("distillation: the teacher's inference to generate responses is billed too and is not "
                            "estimated here (no figure in REF)")
    return training


def _storage_cost(config: PipelineConfig, family: ModelFamily, ledger: _Ledger) -> float | None:
    p, src = _price(config.pricing, family, "storage_per_month", ledger.live)
    if p is None:
        ledger.unknown.append(_unknown("storage_per_month"))
    return ledger.add(_line("storage", 1, "model-month", p, "per model per month", src,
                            "one month of custom-model storage"))


def _eval_tokens(config: PipelineConfig, family: ModelFamily, cpt: float, test_records: int,
                 test_input_chars: int, eval_calls: int, live: LivePrices | None = None) -> _EvalTokens:
    p_in, src_in = _price(config.pricing, family, "on_demand_input_per_1k", live)
    p_out, src_out = _price(config.pricing, family, "on_demand_output_per_1k", live)
    return _EvalTokens(calls=eval_calls, in_tok=tokens(test_input_chars * eval_calls / max(test_records, 1), cpt),
                       out_tok=eval_calls * config.evaluation.max_tokens,
                       p_in=p_in, src_in=src_in, p_out=p_out, src_out=src_out)


def _on_demand_cost(what: str, t: _EvalTokens, ledger: _Ledger) -> float | None:
    """One priced line for ``t.calls`` on-demand calls (None when a price is unknown)."""
    usd = None if t.p_in is None or t.p_out is None else (t.in_tok * t.p_in + t.out_tok * t.p_out) / 1000
    ledger.add(_line(what, t.in_tok + t.out_tok, "tokens", None, "per 1k tokens (in/out)", f"{t.src_in}/{t.src_out}",
                     f"{t.calls} calls: {t.in_tok:,} in + {t.out_tok:,} out (≤ max_tokens)", usd=usd,
                     unit_price_in=t.p_in, unit_price_out=t.p_out))
    return usd


def _provisioned_cost(config: PipelineConfig, catalog: Catalog, family: ModelFamily,
                      ledger: _Ledger) -> float | None:
    sv = config.serving
    units = model_units(config)  # what tasks/serve.py asks for
    if sv.commitment:
        return _commitment_cost(config, units, ledger)
    hours = float(math.ceil(sv.max_hours))
    p, src = _price(config.pricing, family, "pt_hour_no_commit", ledger.live)
    if p is None:
        ledger.unknown.append(_unknown("pt_hour_no_commit"))
    usd = ledger.add(_line("serving: provisioned throughput", units * hours, "model-unit hours", p,
                           "per model-unit hour", src,
                           f"{units} MU × {hours:g} h (serving.max_hours={sv.max_hours:g}, billed hourly)"))
    quota = catalog.quotas.no_commitment_model_units_per_account
    if quota is not None and units > quota:
        ledger.notes.append(f"serving.model_units={units} exceeds the default account quota of {quota} "
                            "no-commitment model units (docs/bedrock-facts.md §2.7): request a quota increase "
                            "first")
    return usd


def _commitment_cost(config: PipelineConfig, units: int, ledger: _Ledger) -> float | None:
    """A committed PT bills its whole term, hourly, from purchase (docs/bedrock-facts.md §2.7): units × the
    term's hours × ``pricing.pt_hour_commitment`` (no catalog figure: unknown, with the term hours shown)."""
    sv = config.serving
    hours = COMMITMENT_MONTHS[sv.commitment] * HOURS_PER_MONTH
    price, src = _commitment_price(config.pricing, sv.commitment, ledger.live)
    if price is None:
        ledger.unknown.append(f"provisioned throughput with commitment {sv.commitment}: no commitment price in the "
                              f"catalog or config (set pricing.pt_hour_commitment); the term is {units} MU × "
                              f"{hours:g} h, billed whole, and the PT cannot be deleted before it ends "
                              "(docs/bedrock-facts.md §2.7) — remove serving.commitment unless you mean it")
    return ledger.add(_line("serving: provisioned throughput", units * hours, "model-unit hours", price,
                            "per model-unit hour", src,
                            f"{units} MU × {hours:g} h (the whole {sv.commitment} term, billed whole)",
                            term_hours=hours))


def _custom_tokens(config: PipelineConfig, t: _EvalTokens, ledger: _Ledger) -> tuple[_EvalTokens, bool]:
    """``t`` priced at the Price List's custom-model token prices when it has both (and the config does not
    override the on-demand prices); else ``t`` as it is, priced like the base model (the bool: custom prices)."""
    live = ledger.live
    p_in, p_out = (live.get("custom_input_per_1k"), live.get("custom_output_per_1k")) if live else (None, None)
    if p_in is None or p_out is None or config.pricing.on_demand_input_per_1k is not None \
            or config.pricing.on_demand_output_per_1k is not None:
        return t, False
    return _EvalTokens(calls=t.calls, in_tok=t.in_tok, out_tok=t.out_tok, p_in=p_in[0], src_in=p_in[1],
                       p_out=p_out[0], src_out=p_out[1]), True


def _custom_on_demand_cost(config: PipelineConfig, family: ModelFamily, t: _EvalTokens,
                           ledger: _Ledger) -> float | None:
    if not family.on_demand_deployment:
        ledger.notes.append(f"{family.display} has no on-demand deployment (docs/bedrock-facts.md §2.8): "
                            "serving.mode on_demand will be refused; use provisioned")
    t, custom = _custom_tokens(config, t, ledger)
    if not custom:
        ledger.notes.append("on-demand custom-model calls priced like the base model's on-demand tokens "
                            "(unconfirmed)")
    return _on_demand_cost("serving: custom model on demand", t, ledger)


def _serving_cost(config: PipelineConfig, catalog: Catalog, family: ModelFamily, cpt: float, test_records: int,
                  test_input_chars: int, eval_calls: int, ledger: _Ledger) -> tuple[ServingKind, float | None]:
    """Serving for the evaluation window: (serving kind, usd)."""
    if eval_calls == 0:
        why = "evaluation disabled" if not config.evaluation.enabled else "no test split"
        ledger.notes.append(f"serving: {why}, so no serving resource is created")
        return "none", 0.0
    kind = serving_kind(config, family)  # the same decision tasks/serve.py acts on (tasks/run/plan.py)
    t = _eval_tokens(config, family, cpt, test_records, test_input_chars, eval_calls, ledger.live)
    parts: list[float | None] = []
    if kind == "provisioned":
        parts.append(_provisioned_cost(config, catalog, family, ledger))
    else:
        parts.append(_custom_on_demand_cost(config, family, t, ledger))
    # the base model is always called on demand for the comparison
    parts.append(_on_demand_cost("evaluation: base model on demand", t, ledger))
    for f, pv in (("on_demand_input_per_1k", t.p_in), ("on_demand_output_per_1k", t.p_out)):
        if pv is None:
            ledger.unknown.append(_unknown(f))
    return kind, _sum(parts)


JUDGE_PAIRS = 2           # challenger vs base, and vs the champion (when the lineage has one): an upper bound
JUDGE_TEMPLATE_CHARS = 400   # tasks/evaluation/judge.py judge_prompt's fixed text, about


def _judge_cost(config: PipelineConfig, catalog: Catalog, cpt: float, test_records: int, test_input_chars: int,
                eval_calls: int, ledger: _Ledger) -> tuple[int, float | None]:
    """The judge's on-demand calls: (calls, usd; None when a price is unknown)."""
    jc = config.evaluation.judge
    if jc is None or eval_calls == 0:
        return 0, 0.0
    judged = min(eval_calls, jc.max_examples or eval_calls)
    calls = 2 * JUDGE_PAIRS * judged
    per_call_chars = (JUDGE_TEMPLATE_CHARS + len(jc.rubric) + test_input_chars / max(test_records, 1)
                      + 2 * config.evaluation.max_tokens * cpt)
    in_tok, out_tok = tokens(per_call_chars * calls, cpt), calls * jc.max_tokens
    try:
        fam: ModelFamily | None = catalog.family_of(jc.model)
    except Exception:  # noqa: BLE001 - a judge outside the catalog: its prices must come from the config
        fam = None
    prices: list[tuple[float | None, str]] = []
    for override, f in ((jc.input_per_1k, "on_demand_input_per_1k"), (jc.output_per_1k, "on_demand_output_per_1k")):
        if override is not None:
            prices.append((float(override), "evaluation.judge"))
            continue
        value, src = _catalog_price(fam, f) if fam is not None else (None, "unknown")
        prices.append((value, src))
        if value is None:
            where = "the catalog has no confirmed figure" if fam is not None else "the model is not in the catalog"
            ledger.unknown.append(f"judge {jc.model}: {_PRICE_FIELDS[f]}: {where} (set evaluation.judge."
                                  f"{'input' if 'input' in f else 'output'}_per_1k in the config)")
    (p_in, src_in), (p_out, src_out) = prices
    usd = None if p_in is None or p_out is None else (in_tok * p_in + out_tok * p_out) / 1000
    ledger.add(_line(f"evaluation: judge {jc.model} on demand", in_tok + out_tok, "tokens", None,
                     "per 1k tokens (in/out)", f"{src_in}/{src_out}",
                     f"{calls} calls ({judged} examples × 2 orders × {JUDGE_PAIRS} pairs, at most): {in_tok:,} in + "
                     f"{out_tok:,} out (≤ judge.max_tokens); cached verdicts cost nothing", usd=usd,
                     unit_price_in=p_in, unit_price_out=p_out))
    return calls, usd


CHAMPION_UPPER_BOUND = ("at most: no champion on the lineage's first run, and a rerun or an unchanged test split "
                        "(same sha256 and evaluation settings) reuses its recorded outputs, no calls; the estimate "
                        "does not read the registry")


def _champion_cost(config: PipelineConfig, family: ModelFamily, cpt: float, test_records: int,
                   test_input_chars: int, eval_calls: int, ledger: _Ledger) -> tuple[int, float | None]:
    """The champion's calls through its production serving (see the module docstring): (calls, usd; None when a
    price is unknown). No line without ``production.mode`` or without an evaluation."""
    if config.production.mode == "none" or eval_calls == 0:
        return 0, 0.0
    from tasks.run.plan import production_kind  # the decision tasks/promote.py acts on

    t = _eval_tokens(config, family, cpt, test_records, test_input_chars, eval_calls, ledger.live)
    tok = f"{t.calls} calls: {t.in_tok:,} in + {t.out_tok:,} out (≤ max_tokens)"
    if production_kind(config) == "provisioned":
        ledger.add(_line("evaluation: champion on its PT", t.in_tok + t.out_tok, "tokens", None,
                         "per 1k tokens (in/out)", "production PT, billed hourly",
                         f"{tok}, {CHAMPION_UPPER_BOUND}; marginal cost 0: the champion's Provisioned Throughput is "
                         "billed hourly whether or not the evaluation calls it (docs/bedrock-facts.md §2.7)",
                         usd=0.0, unit_price_in=0.0, unit_price_out=0.0))
        return t.calls, 0.0
    t, custom = _custom_tokens(config, t, ledger)
    usd = None if t.p_in is None or t.p_out is None else (t.in_tok * t.p_in + t.out_tok * t.p_out) / 1000
    priced = ("at the Price List's custom-model token prices" if custom else
              "priced like the base model's on-demand tokens (unconfirmed)")
    ledger.add(_line("evaluation: champion on demand", t.in_tok + t.out_tok, "tokens", None, "per 1k tokens (in/out)",
                     f"{t.src_in}/{t.src_out}",
                     f"{tok}, {CHAMPION_UPPER_BOUND}; its custom model deployment is billed per token, {priced}",
                     usd=usd,
                     unit_price_in=t.p_in, unit_price_out=t.p_out))
    for f, pv in (("on_demand_input_per_1k", t.p_in), ("on_demand_output_per_1k", t.p_out)):
        if pv is None:
            ledger.unknown.append(f"champion's calls (custom model deployment): {_unknown(f)}")
    return t.calls, usd


def production_cost(family: ModelFamily, kind: Literal["provisioned", "deployment"], model_units: int | None,
                    commitment: str | None = None, pricing: Any = None,
                    live: LivePrices | None = None) -> ProductionCost:
    """The production serving's cost: per hour, per month and (a commitment) per term. ``pricing``: the config's
    ``PricingOverride`` (or None: the catalog's figures); ``live``: the Price List's figures, when read."""
    if kind == "deployment":
        return ProductionCost(kind=kind, hourly_usd=0.0, monthly_usd=0.0, price_source="no hourly bill",
                              detail="on-demand custom model deployment: billed per call at on-demand token prices "
                                     "(docs/bedrock-facts.md §2.8), no hourly charge")
    units = int(model_units or 1)
    if commitment:
        hours = COMMITMENT_MONTHS[commitment] * HOURS_PER_MONTH
        price, src = _commitment_price(pricing, commitment, live)
        unknown = [] if price is not None else [
            f"production: provisioned throughput with commitment {commitment}: no commitment price in the catalog "
            f"or config (set pricing.pt_hour_commitment); the term is {units} MU × {hours:g} h, billed whole, and "
            "the PT cannot be deleted before it ends (docs/bedrock-facts.md §2.7)"]
        hourly = None if price is None else units * float(price)
        return ProductionCost(kind=kind, model_units=units, commitment=commitment, hourly_usd=hourly,
                              monthly_usd=None if hourly is None else round(hourly * HOURS_PER_MONTH, 6),
                              term_hours=hours, term_usd=None if hourly is None else round(hourly * hours, 6),
                              price_source=src,
                              detail=f"{units} MU × {hours:g} h (the whole {commitment} term, billed whole)",
                              unknown=unknown)
    price, src = _price(pricing, family, "pt_hour_no_commit", live)
    hourly = None if price is None else units * float(price)
    return ProductionCost(kind=kind, model_units=units, hourly_usd=hourly,
                          monthly_usd=None if hourly is None else round(hourly * HOURS_PER_MONTH, 6),
                          price_source=src, detail=f"{units} MU × {HOURS_PER_MONTH:g} h a month, no commitment",
                          unknown=[] if price is not None else [f"production: {_unknown('pt_hour_no_commit')}"])


def _production(config: PipelineConfig, family: ModelFamily, live: LivePrices | None = None) -> ProductionCost | None:
    if config.production.mode == "none":
        return None
    from tasks.run.plan import production_kind  # the decision tasks/promote.py acts on

    prod = config.production
    return production_cost(family, production_kind(config), prod.model_units, prod.commitment, config.pricing, live)


def _verdict(known: float, budget: float | None, unknown: list[str]) -> Verdict:
    if budget is not None and known > budget:
        return "over_budget"
    if unknown:
        return "unknown_price"
    return "ok"


def build_estimate(config: PipelineConfig, *, train_chars: int, test_records: int, test_input_chars: int,
                   method: str, notes: list[str] | None = None, train_tokens: int | None = None,
                   live: LivePrices | None = None) -> CostEstimate:
    """The arithmetic, from counts alone (shared by ``estimate_cost`` and ``estimate_from_config``). ``live``: the
    AWS Price List's figures (``live_prices``), used after ``config.pricing`` and before the catalog."""
    catalog = load_catalog()
    family = catalog.family_of(config.base_model)
    cpt = catalog.spec(config.base_model, config.customization_type).limits.chars_per_token
    ledger = _Ledger(notes=list(notes or []) + (live.notes if live is not None else []), live=live)

    epochs = _epochs(config, ledger.notes)
    t_tokens = train_tokens if train_tokens is not None else tokens(train_chars, cpt)
    training = _training_cost(config, family, t_tokens, epochs, ledger)
    storage = _storage_cost(config, family, ledger)
    ev = config.evaluation
    eval_calls = min(test_records, ev.max_examples or test_records) if ev.enabled else 0
    kind, serving = _serving_cost(config, catalog, family, cpt, test_records, test_input_chars, eval_calls, ledger)
    judge_calls, judge = _judge_cost(config, catalog, cpt, test_records, test_input_chars, eval_calls, ledger)
    champion_calls, champion = _champion_cost(config, family, cpt, test_records, test_input_chars, eval_calls,
                                              ledger)

    known = round(sum(line["usd"] for line in ledger.lines if line["usd"] is not None), 6)
    budget = config.budget.max_usd
    production = _production(config, family, live)
    if production is not None:
        ledger.notes.append("production (if the gate passes and the model is promoted): " + production.detail
                            + "; a standing cost, not in total_usd or the budget")
    return CostEstimate(
        train_tokens=t_tokens, epochs=epochs, training_usd=training, serving_usd=serving, storage_usd=storage,
        total_usd=_sum([training, storage, serving, judge, champion]), unknown=list(dict.fromkeys(ledger.unknown)),
        lines=ledger.lines, budget_usd=budget, verdict=_verdict(known, budget, ledger.unknown), known_usd=known,
        serving_kind=kind, eval_calls=eval_calls, chars_per_token=cpt, method=method, notes=ledger.notes,
        production=production, judge_usd=judge, judge_calls=judge_calls, champion_usd=champion,
        champion_calls=champion_calls)


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def estimate_cost(config: PipelineConfig, prepared: PreparedData, live: LivePrices | None = None) -> CostEstimate:
    """Estimate a run from its prepared splits.

    Train characters are counted by streaming ``train.jsonl`` when the file is on this machine; when it
    is not (a rerun on another worker), ``prepared.estimated_train_tokens`` is used as it is.
    """
    notes: list[str] = []
    train_tokens = None
    train_chars = 0
    if Path(prepared.train.path).exists():
        _, i, o = file_chars(prepared.train.path)
        train_chars = i + o
    else:
        train_tokens = prepared.estimated_train_tokens
        notes.append(f"train file {prepared.train.path} not on this machine: using prepare's token estimate")
    test_records = test_chars = 0
    if prepared.test is not None:
        if Path(prepared.test.path).exists():
            test_records, test_chars, _ = file_chars(prepared.test.path)
        else:
            test_records = prepared.test.records
            notes.append("test file not on this machine: its prompts are counted as empty")
    return build_estimate(config, train_chars=train_chars, test_records=test_records, test_input_chars=test_chars,
                          method="prepared", notes=notes, train_tokens=train_tokens, live=live)


def estimate_from_config(config: PipelineConfig, *, method: Literal["auto", "prepare", "raw"] = "auto",
                         work_dir: str | Path | None = None,
                         progress: Callable[[int], None] | None = None,
                         live: LivePrices | None = None) -> CostEstimate:
    """Estimate before anything is prepared (``forge estimate CONFIG``).

    ``prepare`` (the default; ``auto`` is the same): run the real ``prepare`` into a
    temporary folder, so the counts are exactly those the run will train on (dedupe, preset record
    cap, augmentation, split), and bad data fails here with every problem (``DataValidationError``).
    ``raw``: stream the raw source once and count the mapped columns, scaled by the split fractions and
    record caps — fast and approximate, no validation.
    ``progress(records_read)`` is called now and then on large files. ``live``: the Price List's figures
    (``live_prices``; ``forge estimate --live``).
    """
    if method in ("auto", "prepare"):
        import tempfile

        from tasks.data.preparation import prepare  # the plain function: no Prefect (forge estimate is a data verb)

        with tempfile.TemporaryDirectory(prefix="forge-estimate-", dir=work_dir) as tmp:
            prepared = prepare(config, tmp, progress=progress)
            return estimate_cost(config, prepared, live)
    return _estimate_raw(config, progress, live)


PROGRESS_EVERY = 100_000


def _raw_rows(source: str, fmt: str) -> Iterator[dict]:
    """Stream raw rows as dicts: JSONL line by line, CSV in chunks, Parquet in record batches. The source gets the
    data pre-flight first (tasks/data/sources.py: a regular file, not compressed, not UTF-16...), so a FIFO or a
    device never hangs the estimate; a line JSON cannot read (even 100k deep) is skipped (validation reports it)."""
    from tasks.data import sources

    try:
        fh, kind = sources.open_source(source, fmt)
    except sources.SourceProblem as e:
        raise ValueError(f"data.source {source}: {e.message} ({e.fix})") from None
    with fh:
        if kind == "jsonl":
            for raw in fh:
                line = raw.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except (ValueError, RecursionError):
                    continue   # validation reports it; the estimate only counts what it can read
                if isinstance(rec, dict):
                    yield rec
        elif kind == "csv":
            import pandas as pd

            for chunk in pd.read_csv(fh, chunksize=50_000, dtype=str, keep_default_na=False):
                yield from chunk.to_dict("records")
        else:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(fh).iter_batches(batch_size=50_000):
                yield from batch.to_pylist()


def _estimate_raw(config: PipelineConfig, progress: Callable[[int], None] | None = None,
                  live: LivePrices | None = None) -> CostEstimate:
    from tasks.catalog import PRESETS

    d = config.data
    if "://" in d.source:
        raise ValueError(f"data.source {d.source}: the raw estimate reads local files only; run prepare first")
    cols = d.columns
    in_cols = [c for c in (cols.prompt, cols.system, cols.text) if c]
    out_cols = [c for c in (cols.completion,) if c]
    sys_len = len(d.system_prompt or "")
    template_extra = max(len(d.prompt_template) - len("{prompt}"), 0)
    n = in_chars = out_chars = 0
    for row in _raw_rows(d.source, d.format):
        n += 1
        in_chars += sys_len + template_extra + sum(len(str(row.get(c) or "")) for c in in_cols)
        out_chars += sum(len(str(row.get(c) or "")) for c in out_cols)
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress(n)
    if n == 0:
        raise ValueError(f"data.source {d.source}: no records")
    used = min(n, d.max_records or n)
    sp = d.split
    n_train = used * sp.train
    cap = PRESETS[config.preset].max_train_records if config.preset else None
    if cap is not None:
        n_train = min(n_train, cap)
    if d.augment.enabled:
        n_train *= 1 + d.augment.copies
    n_test = int(round(used * sp.test))
    avg_in, avg_out = in_chars / n, out_chars / n
    notes = [f"raw estimate: {n:,} source records, ~{n_train:,.0f} train / ~{n_test:,} test by the split fractions; "
             "duplicates and invalid records not removed (run `forge prepare` for exact counts)"]
    return build_estimate(config, train_chars=int(n_train * (avg_in + avg_out)), test_records=n_test,
                          test_input_chars=int(n_test * avg_in), method="raw", notes=notes, live=live)


def check_budget(estimate: CostEstimate, config: PipelineConfig) -> None:
    """The spend guards, together: raise ``BudgetExceeded`` (a ValueError) with what to change.

    - model units above the cap;
    - a commitment on the evaluation PT (the config refuses it too; this guard holds for a config that was
      built without validation);
    - the known part of the estimate above ``budget.max_usd``;
    - ``budget.max_usd`` set and a price unknown: refused unless ``budget.allow_unknown_prices: true`` is
      written out (unset means refuse); ``max_usd: 0`` refuses any run that would spend, priced or not;
    - no budget and ``allow_unknown_prices: false`` written out: refused while a price is unknown.
    """
    sv = config.serving
    if sv.model_units > sv.max_model_units:
        raise BudgetExceeded(f"serving.model_units={sv.model_units} exceeds "
                             f"serving.max_model_units={sv.max_model_units}: "
                             "lower model_units, or raise the cap deliberately")
    if sv.commitment and estimate.serving_kind == "provisioned":
        raise BudgetExceeded(f"serving.commitment={sv.commitment} on the evaluation Provisioned Throughput, which "
                             "the run deletes when the evaluation ends: a committed PT cannot be deleted before its "
                             "term ends (docs/bedrock-facts.md §2.7); remove serving.commitment")
    budget = config.budget
    if budget.max_usd is not None and estimate.known_usd > budget.max_usd:
        priced = [line for line in estimate.lines if line["usd"] is not None]
        biggest = max(priced, key=lambda line: line["usd"]) if priced else None
        fig = (f"estimated cost ${estimate.total_usd:,.2f}" if estimate.total_usd is not None
               else f"estimated cost of at least ${estimate.known_usd:,.2f} (known items only)")
        msg = f"{fig} exceeds budget.max_usd=${budget.max_usd:,.2f}"
        if biggest is not None:
            msg += f"; the largest item is {biggest['item']} (${biggest['usd']:,.2f}: {biggest['detail']})"
        raise BudgetExceeded(f"{msg}. To fit: {_levers(biggest, config)}, or raise budget.max_usd")
    if budget.max_usd == 0:
        unpriced = [line["item"] for line in estimate.lines if line["usd"] is None]
        if unpriced:
            raise BudgetExceeded("budget.max_usd is 0 and the run would spend on items with no known price ("
                                 + ", ".join(unpriced) + "): a zero budget refuses any run that spends; "
                                 "raise budget.max_usd")
    if not estimate.unknown:
        return
    if budget.max_usd is not None and budget.allow_unknown_prices is not True:
        raise BudgetExceeded(
            f"refusing to start: budget.max_usd=${budget.max_usd:,.2f} is set and these prices are unknown, so the "
            "budget cannot be checked: " + "; ".join(estimate.unknown)
            + ". Set the pricing.* figures from https://aws.amazon.com/bedrock/pricing/, or write "
            "budget.allow_unknown_prices: true to start anyway")
    if budget.allow_unknown_prices is False:
        raise BudgetExceeded(
            "refusing to start: budget.allow_unknown_prices is false and these prices are unknown: "
            + "; ".join(estimate.unknown)
            + ". Set the pricing.* figures from https://aws.amazon.com/bedrock/pricing/ or allow unknown prices")


def _levers(line: dict | None, config: PipelineConfig) -> str:
    item = (line or {}).get("item", "")
    if item == "training":
        return ("train fewer epochs (hyperparameters.epochCount, or preset 'quick') or on less data "
                f"(data.max_records; now {config.data.max_records or 'all records'})")
    if item.startswith("serving: provisioned"):
        return (f"shorten serving.max_hours (now {config.serving.max_hours:g}) or lower serving.model_units "
                f"(now {config.serving.model_units})")
    if item.startswith("evaluation: judge"):
        jc = config.evaluation.judge
        return (f"lower evaluation.judge.max_examples (now {jc.max_examples if jc else '-'}) or "
                f"evaluation.judge.max_tokens (now {jc.max_tokens if jc else '-'})")
    if item.startswith("evaluation: champion"):
        return (f"lower evaluation.max_examples (now {config.evaluation.max_examples}): the champion is called at "
                "most once per evaluated example (an unchanged test split and evaluation settings reuse its recorded "
                "outputs instead)")
    if item.startswith(("serving: custom", "evaluation")):
        return (f"lower evaluation.max_examples (now {config.evaluation.max_examples}) or evaluation.max_tokens "
                f"(now {config.evaluation.max_tokens})")
    return "reduce the largest item"
