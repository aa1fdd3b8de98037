"""The JSON schema of ``PipelineConfig`` as the Prefect run form and API see it — DERIVED from the model.

There is one validation path, ``PipelineConfig``; this module only adds to the JSON schema pydantic generates
from it (``json_schema_extra`` hooks the config models call), never a second hand-written copy:

- ``position`` on every property of every config model, equal to the field's place in the model. Prefect's two
  UIs order a form's fields by ``position`` (ui-v2 ``schema-form``: ``sort((a, b) => (a.position ?? 0) -
  (b.position ?? 0))``; ui v1 ``SchemaFormFields``: same with ``?? Infinity``, both in the bundles under
  ``prefect/server/ui*/assets``). Prefect gives top-level parameters a ``position`` but not the properties
  of a nested model, which go to ``definitions``: on PostgreSQL the deployment's ``parameter_openapi_schema``
  is JSONB, which stores object keys sorted (by length, then bytes:
  https://www.postgresql.org/docs/current/datatype-json.html "jsonb does not preserve ... the order of
  object keys"), so without a ``position`` the form came out as Aws, Job, Rft, Data, Gate, Name, ...;
- ``enum`` of ``base_model`` from the catalog's customizable model ids (``customization_type`` is already an
  enum: ``tasks.catalog.CustomizationType``);
- the catalog's rules between fields, as JSON Schema conditionals (``if``/``then`` under ``dependentSchemas``,
  which the form renderers ignore and the server's validator — jsonschema Draft 2020-12 in
  ``prefect.utilities.schema_tools.validation`` — enforces when a run is created): the types a family supports,
  each (family, type)'s hyperparameter names and ranges, on-demand serving where the family has it (and its
  Regions), the section a type needs (``distillation``, ``rft``), the type a preset is for.
  ``dependentSchemas`` rather than ``allOf``: both UIs treat ``allOf`` as parts of the form to render.

What the schema cannot say is still refused by the model when the flow starts, before anything is created
(``tests/deployments/test_form.py`` pins which is which: schema-valid ⇔ model-valid on the rules the schema
expresses). Deliberately narrower than the model: the form takes the catalog's spellings — the customizable
model id (not its plain id or inference profile), the API name of a customization type (not ``fine-tuning``)
and numbers for numeric hyperparameters (not ``"2"``), all of which a YAML file may still use.

Imports tasks.catalog only (the package rule of tasks/config/).
"""

from __future__ import annotations

from typing import Any

from tasks.catalog import CONTINUABLE_TYPES, PRESETS, CustomizationType, HyperParameter, load_catalog

# ``$`` in Python's re (the server's validator) also matches before a final newline; ``(?![\s\S])`` is the end of
# the string in both Python and ECMA-262 (the UI), so the schema refuses "name\n" as ``re.fullmatch`` does.
_END = r"(?![\s\S])"


def anchored(regex: str) -> str:
    """A JSON Schema ``pattern`` (searched, not matched) that holds exactly where ``re.fullmatch(regex)`` does."""
    return f"^(?:{regex}){_END}"


def ordered(schema: dict[str, Any], cls: type | None = None) -> None:
    """``json_schema_extra`` of every config model: each property's ``position`` is its field's place."""
    for position, prop in enumerate((schema.get("properties") or {}).values()):
        prop["position"] = position


def models_of(model: type) -> dict[str, type]:
    """Every pydantic model reachable from ``model`` through its fields' annotations, by class name (the
    ``definitions`` of its JSON schema, each with ``position``-ordered properties)."""
    import typing

    from pydantic import BaseModel

    found: dict[str, type] = {}

    def walk(m: type) -> None:
        if m.__name__ in found:
            return
        found[m.__name__] = m
        for f in m.model_fields.values():
            for t in (f.annotation, *typing.get_args(f.annotation)):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    walk(t)

    walk(model)
    return found


def _hyperparameter(hp: HyperParameter) -> dict[str, Any]:
    """One hyperparameter as the form takes it (a number in range, or one of its choices)."""
    if hp.type == "str":
        return {"type": "string", **({"enum": list(hp.choices)} if hp.choices else {})}
    out: dict[str, Any] = {"type": "integer" if hp.type == "int" else "number"}
    if hp.min is not None:
        out["minimum"] = hp.min
    if hp.max is not None:
        out["maximum"] = hp.max
    return out


def _of_family(ids: list[str]) -> dict[str, Any]:
    return {"properties": {"base_model": {"enum": ids}}, "required": ["base_model"]}


def _of_type(ctype: CustomizationType) -> dict[str, Any]:
    """A config of this customization type (absent = the model's default, FINE_TUNING)."""
    cond: dict[str, Any] = {"properties": {"customization_type": {"const": ctype.value}}}
    if ctype != CustomizationType.FINE_TUNING:
        cond["required"] = ["customization_type"]
    return cond


def _both(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {**a.get("properties", {}), **b.get("properties", {})},
            "required": [*a.get("required", []), *b.get("required", [])]}


def _then(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule's ``then``, typed: with a ``type`` matching the config, jsonschema's ``best_match`` (the message the
    server returns) descends to this rule's error instead of stopping at ``config``'s anyOf with null (it stops
    when the best two candidates tie, and an untyped subschema ties with "is not of type 'null'")."""
    return {"type": "object", **rule}


def catalog_rules(default_region: str, sections: dict[CustomizationType, str]) -> dict[str, Any]:
    """The catalog's rules between fields, one ``if``/``then`` each (``dependentSchemas`` of PipelineConfig)."""
    cat = load_catalog()
    per_model: list[dict[str, Any]] = []
    for fam in cat.families.values():
        is_fam = _of_family(list(fam.model_ids))
        types = [ct.value for ct in fam.customizations]
        supports: dict[str, Any] = {"properties": {"customization_type": {"enum": types}}}
        if CustomizationType.FINE_TUNING.value not in types:
            supports["required"] = ["customization_type"]
        per_model.append({"if": is_fam, "then": _then(supports)})
        for ctype, spec in fam.customizations.items():
            hps = {name: _hyperparameter(hp) for name, hp in spec.hyperparameters.items()}
            per_model.append({"if": _both(is_fam, _of_type(ctype)),
                              "then": _then({"properties": {"hyperparameters": {
                                  "type": "object", "properties": hps, "additionalProperties": False}}})})
        on_demand = {"properties": {"serving": {"properties": {"mode": {"const": "on_demand"}},
                                                "required": ["mode"]}}, "required": ["serving"]}
        if not fam.on_demand_deployment:
            per_model.append({"if": _both(is_fam, on_demand), "then": _then({"properties": {"serving": {
                "properties": {"mode": {"not": {"const": "on_demand"}}}}}})})
        else:
            region: dict[str, Any] = {"properties": {"aws": {"properties": {
                "region": {"enum": list(fam.on_demand_regions)}}}}}
            if default_region not in fam.on_demand_regions:
                region["required"] = ["aws"]
                region["properties"]["aws"]["required"] = ["region"]
            per_model.append({"if": _both(is_fam, on_demand), "then": _then(region)})
    per_type = [{"if": _of_type(ctype), "then": _then({"required": [section],
                                                         "properties": {section: {"type": "object"}}})}
                for ctype, section in sections.items()]
    per_preset = [{"if": {"properties": {"preset": {"const": name}}, "required": ["preset"]},
                   "then": _then(_of_type(p.customization_type))}
                  for name, p in PRESETS.items() if p.customization_type is not None]
    continuable = {"if": {"properties": {"start_from": {"const": "champion"}}, "required": ["start_from"]},
                   "then": _then({"properties": {"customization_type": {
                       "enum": [t.value for t in CONTINUABLE_TYPES]}}})}
    return {"base_model": {"allOf": per_model},
            "customization_type": {"allOf": per_type},
            "preset": {"allOf": per_preset},
            "start_from": {"allOf": [continuable]}}


def pipeline_schema(default_region: str, sections: dict[CustomizationType, str]):
    """``json_schema_extra`` of PipelineConfig: positions, the catalog's model ids, the catalog's rules."""

    def extra(schema: dict[str, Any], cls: type | None = None) -> None:
        ordered(schema)
        schema["properties"]["base_model"]["enum"] = load_catalog().all_model_ids()
        schema["dependentSchemas"] = catalog_rules(default_region, sections)

    return extra


def serving_schema(schema: dict[str, Any], cls: type | None = None) -> None:
    """``json_schema_extra`` of ServingConfig: positions; a commitment needs ``allow_commitment: true``."""
    ordered(schema)
    schema["dependentSchemas"] = {"commitment": {
        "if": {"properties": {"commitment": {"type": "string"}}},
        "then": _then({"properties": {"allow_commitment": {"const": True}}, "required": ["allow_commitment"]})}}
