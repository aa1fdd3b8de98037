"""`forge resources`: what bills right now — every live managed provisioned throughput / deployment, with the
run that owns it, its age, its owner's heartbeat age, its expiry and what the sweep would do (issue 15); a
lineage's production serving (issue 19) is listed as such, with its monthly cost (tasks/estimate.py
``production_cost``: a PT's model units × the hourly price × 730 h; a deployment has no hourly bill)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resources", help="list live managed billing resources (PTs, deployments) and their owners",
                       description="Every provisioned throughput / custom model deployment tagged "
                                   "managed-by=bedrock-forge in the Region: owning run, flow run, age, heartbeat "
                                   "age, expiry, and what `forge sweep` would do with it. Read-only.")
    p.add_argument("--endpoint", default=None, help="AWS endpoint URL (e.g. the emulator)")
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_resources)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def production_cost_of(clients, row: dict):
    """The monthly cost of a production serving row of ``live_billing`` (None when its base model is unknown)."""
    from tasks.catalog import load_catalog
    from tasks.customize import foundation_of
    from tasks.estimate import production_cost

    try:
        family = load_catalog().family_of(foundation_of(clients, row["model_arn"]))
    except Exception:  # noqa: BLE001 - no price shown rather than no listing
        return None
    return production_cost(family, row["kind"], row.get("model_units"), row.get("commitment"))


def _monthly(cost) -> str:
    if cost is None:
        return "unknown (base model not found)"
    if cost.kind == "deployment":
        return "$0/month fixed (on-demand: billed per call)"
    if cost.monthly_usd is None:
        return f"unknown ({cost.unknown[0] if cost.unknown else 'no price'})"
    term = f", {cost.commitment} term ${cost.term_usd:,.2f} billed whole" if cost.commitment and cost.term_usd else ""
    return f"${cost.monthly_usd:,.2f}/month ({cost.detail}{term})"


def cmd_resources(args) -> int:
    from datetime import UTC, datetime

    from forge.commands.run import DUMMY_CREDENTIALS
    from tasks.aws.clients import make_clients
    from tasks.aws.redact import redact
    from tasks.config import AwsConfig
    from tasks.teardown import live_billing

    if args.endpoint:
        for k, v in DUMMY_CREDENTIALS.items():
            os.environ.setdefault(k, v)
    try:
        clients = make_clients(AwsConfig(region=args.region, endpoint_url=args.endpoint))
        rows = live_billing(clients, now=datetime.now(UTC))
        for r in rows:
            if r.get("role") == "production":
                cost = production_cost_of(clients, r)
                r["monthly_usd"] = cost.monthly_usd if cost else None
                r["monthly"] = _monthly(cost)
    except Exception as err:  # noqa: BLE001 - a person reads it
        print(f"forge resources: could not list: {type(err).__name__}: {redact(str(err))}", file=sys.stderr)
        return 1
    rows = redact(rows)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no live managed billing resource in {args.region}")
        return 0
    for r in rows:
        if r.get("role") == "production":
            print(f"{r['kind']:<11} {r['status'] or '?':<10} {r['arn']}  PRODUCTION")
            print(f"    lineage {r.get('lineage') or '-'}  version {r['run_id'] or '-'}  age {_age(r['age_s'])}  "
                  f"cost {r['monthly']}")
            print(f"    sweep: {r['sweep']}")
            continue
        print(f"{r['kind']:<11} {r['status'] or '?':<10} {r['arn']}")
        print(f"    run {r['run_id'] or '-'}  flow run {r['flow_run_id'] or '-'}  age {_age(r['age_s'])}  "
              f"heartbeat {_age(r['heartbeat_age_s'])} ago  expires {r['expires_at'] or '-'}")
        print(f"    sweep: {r['sweep']}")
    return 0
