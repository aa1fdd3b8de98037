"""`forge emulator`: run the local Bedrock emulator as a service (docs/design.md §5, docs/emulator.md).

One endpoint for bedrock, bedrock-runtime, S3, IAM and STS; point boto3 at it with
``AWS_ENDPOINT_URL=http://127.0.0.1:4566`` and dummy credentials.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from emulator.options import add_arguments

    p = sub.add_parser("emulator", help="run the local Bedrock emulator (bedrock, runtime, S3, IAM, STS)",
                       description="Run the local Bedrock emulator: Bedrock control plane + runtime with real wire "
                                   "shapes, S3/IAM/STS through moto, on one endpoint. Use it with "
                                   "AWS_ENDPOINT_URL=http://HOST:PORT and dummy credentials.")
    add_arguments(p)
    p.set_defaults(func=cmd_emulator)


def cmd_emulator(args: argparse.Namespace) -> int:
    from emulator.server import serve
    return serve(host=args.host, port=args.port, speed=args.speed, faults_file=args.faults,
                 state_dir=args.state_dir, invoke_latency_ms=args.invoke_latency_ms,
                 pt_tokens_per_minute=getattr(args, "pt_tokens_per_minute", None),
                 pt_burst_seconds=getattr(args, "pt_burst_seconds", None),
                 enforce_iam=getattr(args, "enforce_iam", None), tls=bool(getattr(args, "tls", None)))
