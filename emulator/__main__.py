"""``python -m emulator``: run the local Bedrock emulator (same options as ``forge emulator``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from emulator.options import add_arguments
    from emulator.server import serve

    p = argparse.ArgumentParser(prog="python -m emulator", description="Local Bedrock + S3/IAM/STS emulator.")
    add_arguments(p)
    p.add_argument("--ready-line", action="store_true", help="print one JSON line with the URL once listening")
    a = p.parse_args(argv)
    return serve(host=a.host, port=a.port, speed=a.speed, faults_file=a.faults, state_dir=a.state_dir,
                 invoke_latency_ms=a.invoke_latency_ms, ready_line=a.ready_line,
                 pt_tokens_per_minute=a.pt_tokens_per_minute, pt_burst_seconds=a.pt_burst_seconds,
                 enforce_iam=a.enforce_iam, tls=bool(a.tls))


if __name__ == "__main__":
    sys.exit(main())
