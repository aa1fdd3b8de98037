"""The options of ``forge emulator`` / ``python -m emulator``, apart from the server so that registering the CLI
verb imports nothing heavy (every ``forge`` command builds the whole parser)."""

from __future__ import annotations

import argparse
import os


def add_arguments(p) -> None:
    """The options of ``forge emulator`` / ``python -m emulator``."""
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4566, help="port (default 4566; 0 = any free port)")
    p.add_argument("--speed", type=float, default=100.0,
                   help="virtual-clock speed factor (default 100: a 20-minute job takes 12 s)")
    p.add_argument("--faults", default=None, metavar="FILE", help="JSON fault rules (see docs/emulator.md)")
    p.add_argument("--state-dir", default=None, metavar="DIR",
                   help="persist state here so a restarted emulator keeps its jobs, models, PTs, S3 objects, roles")
    p.add_argument("--invoke-latency-ms", type=float, default=None, metavar="N",
                   help="added latency of InvokeModel/Converse (default 5 ms)")
    p.add_argument("--pt-tokens-per-minute", type=float, default=None, metavar="N",
                   help="capacity of one PT model unit: input+output tokens per real minute, ThrottlingException "
                        "beyond it (default: emulator/facts/capacity.yaml, 100000; 0 = unlimited)")
    p.add_argument("--pt-burst-seconds", type=float, default=None, metavar="S",
                   help="seconds of capacity a PT can burst (default: emulator/facts/capacity.yaml, 10)")
    p.add_argument("--tls", action=_Tls, nargs=0, default=None,
                   help="serve HTTPS with a self-signed certificate (kept in --state-dir/tls; its path is printed) "
                        "so bearer-token (Bedrock API key) clients can connect")
    p.add_argument("--enforce-iam", action=_EnforceIam, nargs=0, default=None,
                   help="check every request against its caller's IAM policies (AccessDenied as AWS answers); "
                        "keys not issued by the emulator's IAM act as the account root (docs/emulator.md)")


TLS_ENV_FLAG = "FORGE_EMULATOR_TLS"


class _Tls(argparse.Action):
    """``--tls``: also sets FORGE_EMULATOR_TLS, which ``serve`` reads, for callers that do not pass it on."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        os.environ[TLS_ENV_FLAG] = "1"
        setattr(namespace, self.dest, True)


class _EnforceIam(argparse.Action):
    """``--enforce-iam``: also sets FORGE_EMULATOR_ENFORCE_IAM, which ``Emulator`` reads, so callers of
    ``add_arguments`` that do not pass the option on to ``serve`` (``python -m emulator``, ``forge emulator``)
    still start an enforcing emulator."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        from emulator.iam_enforce import ENV_FLAG

        os.environ[ENV_FLAG] = "1"
        setattr(namespace, self.dest, True)
