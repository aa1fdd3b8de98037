"""`forge models`, `forge promote`, `forge rollback`: a lineage's registry, its champion and production serving
(issue 19; tasks/registry, tasks/promote.py).

- ``forge models LINEAGE --config CFG`` (or ``--registry-uri s3://BUCKET/PREFIX/registry/ [--endpoint URL]``):
  the versions (run, status, gate, metrics, time), the champion, and the live production serving. Read-only.
- ``forge promote RUN_ID [--config CFG] [--runs-dir DIR | --runs-uri S3_URI] [--force]``: promote a run's model
  (recorded in the registry, or read from the run's manifest) to production serving, blue/green.
- ``forge rollback LINEAGE --config CFG [--to RUN_ID]``: the previous champion (or ``--to``) back in production.

Exit codes: 0 done, 1 an AWS step failed (the message names what and where), 2 bad input or a refusal (no such
lineage, run or version; production.mode none; a gate that did not pass without --force; nothing to roll back to).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


class Refused(Exception):
    """Bad input or a refusal: exit 2, the message says what, where and how to fix it."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="a lineage's registry: versions, champion, live production serving",
                       description="The versions a config name (lineage) produced, its champion and the champion's "
                                   "production serving, from the registry in S3. Read-only.")
    p.add_argument("lineage", help="the config's name")
    _where(p)
    p.add_argument("--registry-uri", default=os.environ.get("FORGE_REGISTRY_URI"), metavar="S3_URI",
                   help="s3://BUCKET/PREFIX/registry/ (the run bucket and aws.prefix), instead of --config; "
                        "default $FORGE_REGISTRY_URI")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("promote", help="promote a run's model to production serving (blue/green)",
                       description="Serve RUN_ID's custom model in production (production.mode of the config), "
                                   "smoke-test it, switch the lineage's champion, retire the old serving.")
    p.add_argument("run_id")
    _where(p)
    p.add_argument("--runs-dir", default=os.environ.get("FORGE_RUNS_DIR", "runs"))
    p.add_argument("--runs-uri", default=os.environ.get("FORGE_RUNS_URI"), metavar="S3_URI",
                   help="read the run's manifest from S3 (s3://BUCKET/PREFIX/runs/); default $FORGE_RUNS_URI")
    p.add_argument("--force", action="store_true", help="promote even though the run's quality gate did not pass")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("rollback", help="put the previous champion back into production serving",
                       description="Bring the lineage's previous champion (or --to RUN_ID) back into production "
                                   "serving, switch the champion, retire the current one's serving.")
    p.add_argument("lineage", help="the config's name")
    _where(p)
    p.add_argument("--to", default=None, metavar="RUN_ID", help="the version to roll back to (default: the previous "
                                                                 "champion)")
    p.set_defaults(func=cmd_rollback)


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="the lineage's pipeline config YAML (its aws and production)")
    p.add_argument("--endpoint", default=None, help="AWS endpoint URL (e.g. the emulator)")
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
                   or "us-east-1", help="with --registry-uri (a config names its own)")
    p.add_argument("--json", action="store_true")


# -- plumbing ---------------------------------------------------------------------------------------------------
def _load_config(path: str, endpoint: str | None):
    from tasks.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as err:
        raise Refused("\n".join(err.problems)) from None
    except OSError as err:
        raise Refused(f"{path}: cannot read the config: {err.strerror or err}") from None
    return _with_endpoint(config, endpoint)


def _with_endpoint(config, endpoint: str | None):
    if not endpoint:
        return config
    return config.model_copy(update={"aws": _with_endpoint_aws(config.aws, endpoint)})


def _clients(aws):
    from tasks.aws.clients import make_clients

    return make_clients(aws)


def _check_lineage(config, lineage: str) -> None:
    if config.name != lineage:
        raise Refused(f"lineage {lineage!r}: the config names {config.name!r} (a lineage is a config's name): "
                      f"pass that lineage's config")


def _store(args, lineage: str):
    """(clients, registry store, config or None) from --config or --registry-uri."""
    from tasks.registry import RegistryError, RegistryStore, check_lineage, store_for_config

    try:
        check_lineage(lineage)
    except RegistryError as err:
        raise Refused(str(err)) from None
    if args.config:
        config = _load_config(args.config, args.endpoint)
        _check_lineage(config, lineage)
        clients = _clients(config.aws)
        return clients, store_for_config(clients, config), config
    uri = getattr(args, "registry_uri", None)
    if not uri:
        raise Refused(f"forge {args.verb}: say where the registry is: --config CFG (the lineage's config) or "
                      "--registry-uri s3://BUCKET/PREFIX/registry/")
    from tasks.aws.s3uri import split_s3_uri
    from tasks.config import AwsConfig

    try:
        split_s3_uri(uri)
        aws = _with_endpoint_aws(AwsConfig(region=args.region), args.endpoint)
        clients = _clients(aws)
        return clients, RegistryStore.at(clients.s3, uri, lineage), None
    except (ValueError, RegistryError) as err:
        raise Refused(f"--registry-uri {uri!r}: {err} (write it like s3://BUCKET/PREFIX/registry/)") from None


def _with_endpoint_aws(aws, endpoint: str | None):
    """``aws`` pointed at ``endpoint`` (an emulator: dummy credentials unless some are set)."""
    if not endpoint:
        return aws
    from forge.commands.run import DUMMY_CREDENTIALS

    for k, v in DUMMY_CREDENTIALS.items():
        os.environ.setdefault(k, v)
    return aws.model_copy(update={"endpoint_url": endpoint})


def _fail(verb: str, err: BaseException) -> int:
    from tasks.aws.errors import describe_error
    from tasks.aws.redact import redact_text

    print(f"forge {verb}: {redact_text(describe_error(err))}", file=sys.stderr)
    return 1


def _run(verb: str, body) -> int:
    from tasks.promote import PromotionRefused
    from tasks.registry import RegistryError

    try:
        return body()
    except Refused as err:
        print(f"forge {verb}: {err}", file=sys.stderr)
        return 2
    except (PromotionRefused, RegistryError) as err:
        print(f"forge {verb}: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a person reads it
        return _fail(verb, err)


def _emit(args, payload: dict[str, Any], lines: list[str]) -> None:
    from tasks.aws.redact import redact

    if args.json:
        print(json.dumps(redact(payload), indent=2, default=str))
    else:
        print("\n".join(redact(lines)))


# -- forge models -----------------------------------------------------------------------------------------------
def _metric_of(v) -> str:
    custom = (v.metrics or {}).get("custom") or {}
    rule = str(v.gate.get("rule") or "")
    for name in ("bertscore_f1", "rouge_l", "accuracy", "macro_f1", "exact_match"):
        if name in rule and isinstance(custom.get(name), int | float):
            return f"{name} {custom[name]:.3f}"
    for name, val in custom.items():
        if isinstance(val, int | float):
            return f"{name} {val:.3f}"
    return "-"


def models_view(clients, store, lineage: str) -> dict[str, Any]:
    """What `forge models` shows: the registry and the live production servings of the lineage."""
    from tasks.promote import production_servings

    got = store.get()
    if got is None:
        raise Refused(f"no registry for lineage {lineage!r} at {store.uri} (a run of config name {lineage!r} records "
                      "one after its evaluation; check the bucket, aws.prefix and Region)")
    reg = got[0]
    summaries = {s["provisionedModelArn"]: s for s in
                 clients.bedrock.list_provisioned_model_throughputs().get("provisionedModelSummaries", [])}
    summaries.update({s["customModelDeploymentArn"]: s for s in
                      clients.bedrock.list_custom_model_deployments().get("modelDeploymentSummaries", [])})
    live = [{"kind": k, "arn": a, "status": summaries.get(a, {}).get("status"), "version": t.get("forge-version"),
             "model_units": summaries.get(a, {}).get("modelUnits"),
             "champion": bool(reg.champion and reg.champion.serving_arn == a)}
            for k, a, t in production_servings(clients, lineage)]
    return {"lineage": lineage, "registry": store.uri, "champion": reg.champion.model_dump(mode="json")
            if reg.champion else None, "live_production": live,
            "versions": [v.model_dump(mode="json") for v in reg.versions],
            "switches": [s.model_dump(mode="json") for s in reg.switches]}


def _models_lines(view: dict[str, Any]) -> list[str]:
    from tasks.registry import ModelVersion

    lines = [f"lineage {view['lineage']}  registry {view['registry']}"]
    c = view["champion"]
    if c:
        lines.append(f"champion: {c['run_id']} since {c['since']}  model {c['custom_model_arn']}")
        lines.append(f"  production serving: {c['serving_kind'] or '-'} {c['serving_arn'] or '-'}")
    else:
        lines.append("champion: none yet (the first promoted version becomes it)")
    if view["live_production"]:
        for s in view["live_production"]:
            lines.append(f"  live: {s['kind']:<11} {s['status'] or '?':<10} {s['arn']}  version {s['version'] or '?'}"
                         + ("" if s["champion"] else "  (NOT the champion's: retire it with `forge promote`/"
                                                     "`forge rollback`, or delete it by hand)"))
    elif c and c.get("serving_arn"):
        lines.append("  live: NONE — the champion's production serving is gone (`forge rollback --to "
                     f"{c['run_id']}` serves it again)")
    else:
        lines.append("  live: no production serving")
    lines.append(f"versions ({len(view['versions'])}, oldest first):")
    for raw in view["versions"]:
        v = ModelVersion.model_validate(raw)
        gate = "passed" if v.gate.get("passed") else ("failed" if v.gate.get("passed") is False else "-")
        lines.append(f"  {v.run_id:<40} {v.status:<12} gate {gate:<6} {_metric_of(v):<22} {v.recorded_at}")
        if v.note:
            lines.append(f"      {v.note}")
    return lines


def cmd_models(args) -> int:
    def body() -> int:
        clients, store, _ = _store(args, args.lineage)
        view = models_view(clients, store, args.lineage)
        _emit(args, view, _models_lines(view))
        return 0

    return _run("models", body)


# -- forge promote / rollback -----------------------------------------------------------------------------------
def _run_manifest(args, clients=None) -> dict | None:
    """The run's manifest: the local runs folder, else --runs-uri."""
    from tasks.run.manifest import Manifest
    from tasks.run.names import InvalidRunId

    try:
        return Manifest.find(args.runs_dir, args.run_id).data
    except InvalidRunId as err:
        raise Refused(str(err)) from None
    except FileNotFoundError:
        pass
    if not args.runs_uri:
        return None
    from tasks.config import AwsConfig
    from tasks.run.store import S3RunStore

    if clients is None:
        clients = _clients(_with_endpoint_aws(AwsConfig(region=args.region), args.endpoint))
    try:
        found = S3RunStore.at(clients.s3, args.runs_uri).get(args.run_id)
    except ValueError as err:
        raise Refused(f"--runs-uri {args.runs_uri!r}: {err}") from None
    return found[0] if found else None


def _result_lines(verb: str, res) -> list[str]:
    from tasks.promote import result_lines

    return result_lines(res)


def cmd_promote(args) -> int:
    def body() -> int:
        from tasks.aws.clients import account_id
        from tasks.config import PipelineConfig
        from tasks.promote import promote
        from tasks.registry import store_for_config, version_from_manifest
        from tasks.run.names import InvalidRunId, check_run_id

        try:
            check_run_id(args.run_id)
        except InvalidRunId as err:
            raise Refused(str(err)) from None
        doc = None
        if args.config:
            config = _load_config(args.config, args.endpoint)
        else:
            doc = _run_manifest(args)
            if doc is None:
                raise Refused(f"no run {args.run_id!r} under {args.runs_dir}"
                              + (f" or {args.runs_uri}" if args.runs_uri else "")
                              + ": pass --config CFG (the lineage's config), --runs-dir or --runs-uri")
            config = _with_endpoint(PipelineConfig.model_validate(doc.get("config") or {}), args.endpoint)
        clients = _clients(config.aws)
        account = account_id(clients)
        store = store_for_config(clients, config, account)
        version = store.read().version(args.run_id)
        if version is None:
            doc = doc or _run_manifest(args, clients)
            if doc is None:
                raise Refused(f"run {args.run_id!r} is neither in the registry {store.uri} nor under "
                              f"{args.runs_dir}: give --runs-dir / --runs-uri where its manifest is")
            if (doc.get("config") or {}).get("name") not in (None, config.name):
                raise Refused(f"run {args.run_id!r} is of lineage {doc['config']['name']!r}, the config names "
                              f"{config.name!r}")
            version = version_from_manifest(doc, account)
        res = promote(clients, config, store, version, force=args.force)
        _emit(args, res.model_dump(mode="json"), _result_lines("promote", res))
        if res.already and not res.promoted:   # a version that lost or was replaced: not promoted again by itself
            print(f"forge promote: {args.run_id} is {store.read().version(args.run_id).status}: to serve it again use "
                  f"`forge rollback {config.name} --to {args.run_id} --config CFG`, or promote it with --force",
                  file=sys.stderr)
            return 2
        return 0 if res.promoted and not res.alive else 1

    return _run("promote", body)


def cmd_rollback(args) -> int:
    def body() -> int:
        from tasks.promote import rollback

        if not args.config:
            raise Refused("forge rollback: --config CFG is required (its production section says how to serve "
                          "the version brought back)")
        clients, store, config = _store(args, args.lineage)
        if store.get() is None:
            raise Refused(f"no registry for lineage {args.lineage!r} at {store.uri}")
        res = rollback(clients, config, store, to=args.to)
        _emit(args, res.model_dump(mode="json"), _result_lines("rollback", res))
        return 0 if res.promoted and not res.alive else 1

    return _run("rollback", body)
