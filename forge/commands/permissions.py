"""`forge permissions CONFIG [--json] [--role worker|sweeper|oncall|readonly]` (issue 20): the exact IAM policy the
identity that runs the pipeline needs for CONFIG (tasks/permissions.py; docs/permissions.md).

Exit codes: 0 printed, 2 invalid config or no account id to write the ARNs with.
"""

from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """\
Print the least-privilege IAM policy of one role for the runs of CONFIG:

  worker    the identity a run executes as (forge run / rerun, a Prefect worker, the cancel and failure
            hooks, the serving watchdog)
  sweeper   forge sweep / the sweep deployment: deletes only resources tagged managed-by=bedrock-forge
  oncall    worker + sweeper (forge rerun, forge sweep, forge resources, forge status --runs-uri)
  readonly  forge resources, forge status --runs-uri, forge validate --live: lists and reads only

Every statement names the steps that need it and why its resources are what they are. The names the run
makes carry the run key (unknown until the data is prepared), so they appear with '?' wildcards of the run
key's length; Bedrock resources with ids Bedrock assigns are granted on <type>/* conditioned on the
managed-by=bedrock-forge tag. The ARNs need the account id: --account, else the caller's (STS).

Attach the document as a customer managed policy (IAM allows 6,144 characters; --split prints several
when it is longer). A hyperparameter sweep's children are configs of their own names: print each one's.
docs/permissions.md explains every statement."""

EPILOG = """\
examples:
  forge permissions examples/banking77.yaml --account 111122223333
  forge permissions examples/banking77.yaml --role sweeper --json > sweeper-policy.json
  aws iam create-policy --policy-name forge-worker \\
      --policy-document "$(forge permissions examples/banking77.yaml --json)\""""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("permissions", help="print the IAM policy the pipeline's own identity needs for a config",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="pipeline config YAML (e.g. examples/banking77.yaml)")
    p.add_argument("--role", default="worker", choices=["worker", "sweeper", "oncall", "readonly"],
                   help="whose policy (default: worker)")
    p.add_argument("--account", default=None, metavar="ID",
                   help="the 12-digit account id the ARNs name (default: the caller's, from sts:GetCallerIdentity)")
    p.add_argument("--json", action="store_true", help="print only the IAM policy document (JSON)")
    p.add_argument("--split", action="store_true",
                   help="with --json: a JSON list of documents of at most 6,144 characters each")
    p.add_argument("--markdown", action="store_true", help="print the policy as a markdown table")
    p.set_defaults(func=cmd_permissions)


def _account(args, config) -> str | None:
    if args.account:
        return args.account
    try:
        from tasks.aws.clients import account_id, make_clients

        return account_id(make_clients(config.aws))
    except Exception as err:  # noqa: BLE001 - no credentials here: the person passes --account
        print(f"forge permissions: no account id: pass --account ID (asking STS failed: {type(err).__name__})",
              file=sys.stderr)
        return None


def cmd_permissions(args) -> int:
    from forge.commands import load_config_or_report
    from tasks.permissions import explain, markdown, permission_policy

    config = load_config_or_report(args.config)
    if config is None:
        return 2
    account = _account(args, config)
    if account is None:
        return 2
    try:
        policy = permission_policy(config, args.role, account=account)
    except ValueError as err:
        print(f"forge permissions: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(policy.documents() if args.split else policy.document(), indent=2))
    elif args.markdown:
        print(markdown([policy]))
    else:
        print(explain(policy))
    for note in policy.notes:
        if "over IAM's" in note:
            print(f"forge permissions: {note}", file=sys.stderr)
    return 0
