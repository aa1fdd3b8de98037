"""`forge evaluate`: re-evaluate an existing custom model (flows/evaluate.py).

Exit codes: 0 gate passed, 3 gate failed, 1 failed, 2 bad arguments / unknown run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="re-evaluate an existing custom model against its base model",
        description="Serve the custom model of RUN_ID (or --model ARN with --config), evaluate it against the "
                    "base model on the held-out test split, tear the serving resource down. With --serving "
                    "ARN an existing provisioned throughput / deployment is used and left running.")
    p.add_argument("run_id", nargs="?", help="a customization run under --runs-dir")
    p.add_argument("--config", default=None, help="pipeline config YAML (when there is no RUN_ID)")
    p.add_argument("--model", dest="custom_model_arn", default=None, help="custom model ARN to evaluate")
    p.add_argument("--serving", dest="serving_arn", default=None,
                   help="existing provisioned throughput or deployment ARN (not deleted afterwards)")
    p.add_argument("--endpoint", default=None, help="AWS endpoint URL for every service (e.g. an emulator)")
    p.add_argument("--emulator", action="store_true",
                   help="always use the embedded local emulator (its state lives under RUNS_DIR/.emulator-state)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--runs-uri", default=os.environ.get("FORGE_RUNS_URI"), metavar="S3_URI",
                   help="the runs' state in S3 (s3://BUCKET/PREFIX/runs/): a RUN_ID with no folder here is read "
                        "from there (another machine's run); default $FORGE_RUNS_URI")
    p.add_argument("--speed", type=float, default=3000.0, help="virtual-clock speed of the embedded emulator")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from forge.commands import load_config_or_report
    from forge.commands.run import aws_target

    if not args.run_id and not args.config:
        print("give RUN_ID or --config CONFIG --model ARN", file=sys.stderr)
        return 2
    config = None
    if args.config:
        config = load_config_or_report(args.config)
        if config is None:
            return 2
    if args.run_id:
        from tasks.run.names import InvalidRunId, check_run_id

        try:
            check_run_id(args.run_id)
        except InvalidRunId as err:
            print(f"forge evaluate: {err}", file=sys.stderr)
            return 2
    from flows.evaluate import evaluate_model, fetch_run

    with aws_target(args.endpoint, args.speed, Path(args.runs_dir) / ".emulator-state", force_emulator=args.emulator):
        if args.run_id and args.runs_uri:
            try:
                fetch_run(args.runs_dir, args.run_id, args.runs_uri)
            except (FileNotFoundError, ValueError) as err:
                print(f"forge evaluate: {err}", file=sys.stderr)
                return 2
        if args.run_id and not (Path(args.runs_dir) / args.run_id / "manifest.json").exists():
            print(f"no run {args.run_id!r} under {args.runs_dir}"
                  + ("" if args.runs_uri else " (a run made on another machine: add --runs-uri s3://.../runs/)"),
                  file=sys.stderr)
            return 2
        state = evaluate_model(run_id=args.run_id, runs_dir=args.runs_dir, config=config,
                               custom_model_arn=args.custom_model_arn, serving_arn=args.serving_arn,
                               runs_uri=args.runs_uri, return_state=True)
    try:
        result = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001
        result = None
    if isinstance(result, dict):
        print(json.dumps(result, indent=2) if args.json else
              f"evaluation: {result['evaluation_dir']}\ngate: {'PASSED' if result['gate']['passed'] else 'FAILED'}"
              f" — {result['gate']['rule']}\nreport: {result['report'].get('report_md', '-')}")
        return 0
    message = state.message or str(result)
    print(f"evaluation failed: {message}", file=sys.stderr)
    return 3 if "quality gate failed" in message else 1
