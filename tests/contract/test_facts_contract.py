"""A fact has to be right twice: the pipeline's catalog (tasks/catalog/catalog.yaml) and the emulator's own facts
(emulator/facts/*.yaml) are read independently and compared; any disagreement fails, naming the fact."""

from __future__ import annotations

import shutil

import pytest
import yaml

from emulator.facts import FACTS_DIR, Facts, load_facts
from tasks.catalog import Catalog, load_catalog

NOT_LISTED = "REINFORCEMENT_FINE_TUNING"   # RFT is configured through rftConfig; ListFoundationModels omits it


def _hp(hp) -> dict:
    return {k: v for k, v in hp.model_dump().items() if k != "name" and v is not None}


def _rules(cat: Catalog, facts: Facts, mid: str, fam, out: list[str]) -> None:
    rs = facts.rule_set(mid)
    if rs.invoke_shape != fam.invoke_shape:
        out.append(f"{mid}: invoke shape {fam.invoke_shape} (catalog) vs {rs.invoke_shape} (emulator)")
    od = list(fam.on_demand_regions) if fam.on_demand_deployment else []
    if sorted(od) != sorted(rs.on_demand_deployment_regions):
        out.append(f"{mid}: on-demand Regions {od} (catalog) vs {rs.on_demand_deployment_regions} (emulator)")
    if {c.value for c in fam.customizations} != set(rs.customizations):
        out.append(f"{mid}: customization types {sorted(c.value for c in fam.customizations)} (catalog) vs "
                   f"{sorted(rs.customizations)} (emulator rules)")
    for ct, spec in fam.customizations.items():
        rule = rs.customizations.get(ct.value)
        if rule is None:
            continue
        where = f"{mid} {ct.value}"
        if spec.format.value != rule.format.value:
            out.append(f"{where}: data format {spec.format.value} vs {rule.format.value}")
        if fam.customization_regions.get(ct) != rule.regions:
            out.append(f"{where}: Regions {fam.customization_regions.get(ct)} vs {rule.regions}")
        ours = {k: _hp(v) for k, v in spec.hyperparameters.items()}
        theirs = {k: {a: b for a, b in v.model_dump().items() if b is not None}
                  for k, v in rule.hyperparameters.items()}
        if ours != theirs:
            out.append(f"{where}: hyperparameters {ours} vs {theirs}")
        if spec.limits.model_dump() != rule.limits.model_dump():
            out.append(f"{where}: limits {spec.limits.model_dump()} vs {rule.limits.model_dump()}")


def _model(cat: Catalog, facts: Facts, mid: str, out: list[str]) -> None:
    fam = cat.family_of(mid)
    m = facts.model(mid)
    listed = sorted(c.value for c in fam.customizations if c.value != NOT_LISTED)
    if sorted(m.customizationsSupported) != listed:
        out.append(f"{mid}: customizationsSupported {listed} (catalog) vs {sorted(m.customizationsSupported)}")
    lc = cat.lifecycle_of(mid)
    if lc is not None:
        if lc.status != m.modelLifecycle.status:
            out.append(f"{mid}: lifecycle {lc.status} (catalog) vs {m.modelLifecycle.status} (emulator)")
        if lc.eol_date != m.modelLifecycle.endOfLifeTime:
            out.append(f"{mid}: EOL date {lc.eol_date} (catalog) vs {m.modelLifecycle.endOfLifeTime} (emulator)")
        if lc.regions != m.lifecycle_by_region:
            out.append(f"{mid}: per-Region lifecycle {lc.regions} (catalog) vs {m.lifecycle_by_region} (emulator)")
    profile = fam.inference_ids.get(mid, "")
    plain = facts.model(mid.rsplit(":", 1)[0])
    if profile.startswith("us.") and (plain is None or plain.inference_profile != profile):
        out.append(f"{mid}: inference profile {profile} (catalog) vs "
                   f"{None if plain is None else plain.inference_profile} (emulator)")
    _rules(cat, facts, mid, fam, out)


def disagreements(cat: Catalog, facts: Facts) -> list[str]:
    out: list[str] = []
    ours, theirs = set(cat.all_model_ids()), set(facts.customizable_ids())
    out += [f"{m}: customizable in the catalog, not listed by the emulator" for m in sorted(ours - theirs)]
    out += [f"{m}: listed by the emulator, not in the catalog" for m in sorted(theirs - ours)]
    for mid in sorted(ours & theirs):
        _model(cat, facts, mid, out)
    pairs_c = {(p.teacher, s) for p in cat.distillation_pairs for s in p.students}
    pairs_e = {(p.teacher, s) for p in facts.distillation_pairs for s in p.students}
    out += [f"distillation pair {t} -> {s} only in the catalog" for t, s in sorted(pairs_c - pairs_e)]
    out += [f"distillation pair {t} -> {s} only in the emulator" for t, s in sorted(pairs_e - pairs_c)]
    teach_c = {k: v.status for k, v in cat.teacher_lifecycle.items()}
    teach_e = {k: v.status for k, v in facts.teacher_lifecycle.items()}
    if teach_c != teach_e:
        out.append(f"teacher lifecycle {teach_c} (catalog) vs {teach_e} (emulator)")
    return out


def test_the_two_readings_agree():
    assert disagreements(load_catalog(), load_facts()) == []


def test_the_contract_covers_every_customizable_model():
    assert len(load_facts().customizable_ids()) == len(load_catalog().all_model_ids()) >= 10


# -- the contract can fail: perturb one fact in a temp copy of the emulator's facts ---------------------------
def _perturbed(tmp_path, name: str, edit) -> Facts:
    d = tmp_path / "facts"
    shutil.copytree(FACTS_DIR, d)
    raw = yaml.safe_load((d / name).read_text(encoding="utf-8"))
    edit(raw)
    (d / name).write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_facts(str(d))


@pytest.mark.parametrize("name, edit, expected", [
    ("customization.yaml", lambda r: r["rules"]["nova"]["customizations"]["FINE_TUNING"]["hyperparameters"]
     ["epochCount"].update(max=6), "amazon.nova-micro-v1:0:128k FINE_TUNING: hyperparameters"),
    ("customization.yaml", lambda r: r["rules"]["claude-3-haiku"]["customizations"]["FINE_TUNING"].update(
        regions=["us-east-1"]), "FINE_TUNING: Regions ['us-west-2'] vs ['us-east-1']"),
    ("customization.yaml", lambda r: r["rules"]["nova"].update(on_demand_deployment_regions=["us-east-1", "us-west-2"]),
     "on-demand Regions ['us-east-1'] (catalog)"),
    ("customization.yaml", lambda r: r["rules"]["llama-3-1"]["customizations"]["FINE_TUNING"].update(
        format="bedrock-conversation-2024"), "data format prompt-completion vs bedrock-conversation-2024"),
    ("customization.yaml", lambda r: r["rules"]["claude-3-haiku"]["customizations"]["FINE_TUNING"]["limits"].update(
        max_train_records=20000), "limits"),
    ("customization.yaml", lambda r: r["distillation_pairs"][0]["students"].append("amazon.nova-pro-v1:0:300k"),
     "distillation pair us.amazon.nova-pro-v1:0 -> amazon.nova-pro-v1:0:300k only in the emulator"),
    ("customization.yaml", lambda r: r["rules"]["llama-3-3"]["customizations"]["FINE_TUNING"]["limits"].update(
        max_total_records=11000), "meta.llama3-3-70b-instruct-v1:0:128k FINE_TUNING: limits"),
    ("customization.yaml", lambda r: r["rules"]["llama-3-1"]["customizations"]["FINE_TUNING"]["limits"].update(
        min_total_records=10), "meta.llama3-1-8b-instruct-v1:0:128k FINE_TUNING: limits"),
    ("customization.yaml", lambda r: r["rules"]["llama-3-2"]["customizations"]["FINE_TUNING"]["limits"].pop(
        "min_total_records"), "'min_total_records': 100"),
    ("customization.yaml", lambda r: r["teacher_lifecycle"]["meta.llama3-1-405b-instruct-v1:0"].update(
        status="ACTIVE"), "teacher lifecycle"),
    ("models.yaml", lambda r: r["models"]["anthropic.claude-3-haiku-20240307-v1:0:200k"]["modelLifecycle"].update(
        status="ACTIVE"), "lifecycle EOL (catalog) vs ACTIVE (emulator)"),
    ("models.yaml", lambda r: r["models"]["meta.llama3-2-1b-instruct-v1:0:128k"].update(
        customizationsSupported=["FINE_TUNING", "DISTILLATION"]), "customizationsSupported"),
    ("models.yaml", lambda r: r["models"].pop("cohere.command-light-text-v14:7:4k"),
     "cohere.command-light-text-v14:7:4k: customizable in the catalog, not listed by the emulator"),
])
def test_one_perturbed_fact_is_reported(tmp_path, name, edit, expected):
    found = disagreements(load_catalog(), _perturbed(tmp_path, name, edit))
    assert found and any(expected in d for d in found), found


# -- prices: the catalog's offline figures and usage-type names vs the emulator's Price List -------------------
# catalog Pricing field -> the catalog price_list field whose usage type carries the same figure
_PRICE_FIELDS = {"train_per_1k_tokens": "train_per_1k_tokens", "storage_per_month": "storage_per_month",
                 "pt_hour_no_commit": "pt_hour_no_commit", "on_demand_input_per_1k": "on_demand_input_per_1k",
                 "on_demand_output_per_1k": "on_demand_output_per_1k"}


def price_disagreements(cat: Catalog, products: dict[str, float]) -> list[str]:
    """``products``: the emulator's usage type -> USD. Every product must be a usage type the catalog names (for a
    model in the Region its prefix stands for), and every non-null catalog figure of a named model must be the
    emulator's figure for that usage type."""
    out: list[str] = []
    named: dict[str, tuple[str, str]] = {}
    for fam in cat.families.values():
        for mid in fam.price_list_names:
            if mid not in fam.model_ids:
                out.append(f"price_list_names: {mid} is not a model id of {fam.key}")
            for region in cat.price_list.region_prefixes:
                for f in cat.price_list.usage_types:
                    named[cat.usage_type(mid, f, region)] = (mid, f)
    out += [f"{u}: in the emulator's Price List, but no usage type the catalog names" for u in products
            if u not in named]
    for fam in cat.families.values():
        for pf, lf in _PRICE_FIELDS.items():
            value = getattr(fam.pricing, pf)
            if value is None:
                continue
            regions = [r for rs in fam.customization_regions.values() for r in rs] or ["us-east-1"]
            for mid in fam.price_list_names:
                region = regions[0]          # the offline figures are the family's customization Region's
                usage = cat.usage_type(mid, lf, region)
                if products.get(usage) is None or abs(products[usage] - value) > 1e-12:
                    out.append(f"{fam.key} {pf}: {value} (catalog) vs {products.get(usage)} ({usage}, emulator)")
    return out


def _emulator_products(raw: dict | None = None) -> dict[str, float]:
    raw = raw or yaml.safe_load((FACTS_DIR / "prices.yaml").read_text(encoding="utf-8"))
    return {u: float(p["usd"]) for u, p in raw["products"].items()}


def test_the_prices_agree():
    assert price_disagreements(load_catalog(), _emulator_products()) == []


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["products"]["USE1-Nova2.0Lite-Customization-Training"].update(usd=0.004),
     "nova-2-lite train_per_1k_tokens: 0.00378 (catalog) vs 0.004"),
    (lambda r: r["products"].pop("USE1-Nova2.0Lite-Customization-Storage"),
     "storage_per_month: 1.95 (catalog) vs None"),
    (lambda r: r["products"].update({"USE1-NovaMicro-Customization-Trainng": {"usd": 1, "unit": "1K tokens"}}),
     "USE1-NovaMicro-Customization-Trainng: in the emulator's Price List, but no usage type the catalog names"),
])
def test_one_perturbed_price_is_reported(edit, expected):
    raw = yaml.safe_load((FACTS_DIR / "prices.yaml").read_text(encoding="utf-8"))
    edit(raw)
    found = price_disagreements(load_catalog(), _emulator_products(raw))
    assert any(expected in d for d in found), found
