"""`forge`: the command line for people (docs/design.md §8).

Each verb lives in ``forge/commands/<module>.py`` exposing ``register(subparsers)``, which adds
its parser and sets ``func`` to a function ``(args) -> int`` (the exit code). Heavy imports
(prefect, torch) happen inside those functions, so ``forge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Read by prefect / transformers at import, so set before any verb imports them: no telemetry calls
# (there is no internet in many deployments, and it logged an ERROR per run) and no model-hub lookups
# (the models ship inside packages).
for _key, _value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("HF_HUB_OFFLINE", "1"),
                     ("TRANSFORMERS_OFFLINE", "1")):
    os.environ.setdefault(_key, _value)

# The verb modules, in --help order. Each is imported to register its parser, so an import error
# surfaces at once; the heavy imports stay inside each verb's functions.
COMMAND_MODULES = ["data", "estimate", "run", "resources", "evaluate", "emulator", "deploy", "permissions", "models"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forge",
        description="bedrock-forge: customize, evaluate and safely tear down Amazon Bedrock models.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for mod in COMMAND_MODULES:
        importlib.import_module(f"forge.commands.{mod}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tasks.aws.logs import install_log_redaction

    install_log_redaction()   # account ids out of every log line, whatever the verb (tasks/aws/logs.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
