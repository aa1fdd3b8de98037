"""`forge run`, `forge rerun`, `forge status`, `forge sweep` (docs/design.md §8).

Exit codes of run/rerun: 0 done and gate passed, 3 gate failed, 1 failed, 2 invalid config/data.

The embedded default: with no ``--endpoint`` and no AWS settings in the environment, ``forge run``
starts the local Bedrock emulator itself on a free port with a high speed factor, points the
standard ``AWS_ENDPOINT_URL`` at it, and stops it afterwards. The pipeline never knows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

AWS_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE")
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_SESSION_TOKEN": "testing"}


class RerunSteps:
    """The ``--from`` choices: ``RERUN_STEPS`` of tasks/run/manifest.py (the one step list), imported only
    when argparse checks a value or prints help, so ``forge --help`` stays fast (no pydantic at start)."""

    @staticmethod
    def _steps() -> list[str]:
        from tasks.run.manifest import RERUN_STEPS

        return RERUN_STEPS

    def __contains__(self, value: object) -> bool:
        return value in self._steps()

    def __iter__(self):
        return iter(self._steps())

    def __len__(self) -> int:
        return len(self._steps())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the whole pipeline for a config",
                       description="Run prepare → upload → create role → customize → poll → provision → "
                                   "evaluate → teardown. Without --endpoint and without AWS settings, "
                                   "starts the local emulator (the embedded default).")
    p.add_argument("config", help="pipeline config YAML (see examples/banking77.yaml)")
    _common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("rerun", help="on-call: rerun a failed run, or one step of it",
                       description="Rerun RUN_ID from its first unfinished step, or from --from STEP. "
                                   "Upstream results are reused; AWS resources are adopted, never duplicated.")
    p.add_argument("run_id")
    p.add_argument("--from", dest="from_step", default=None, choices=RerunSteps(), metavar="STEP",
                   help="the step to rerun from, one of: %(choices)s")
    _common(p)
    _runs_uri(p)
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("status", help="show a run (or list runs)")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--runs-dir", default=os.environ.get("FORGE_RUNS_DIR", "runs"))
    p.add_argument("--endpoint", default=None, help="AWS endpoint URL (e.g. the emulator), with --runs-uri")
    _runs_uri(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sweep", help="delete expired / orphaned managed billing resources")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    p.add_argument("--endpoint", default=None, help="AWS endpoint URL (e.g. the emulator)")
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    p.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                   help="delete a resource whose run's heartbeat is older than this (default: "
                        "tasks/run/liveness.py STALE_AFTER_S, 120 s)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)


def _runs_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-uri", default=os.environ.get("FORGE_RUNS_URI"), metavar="S3_URI",
                   help="read the run state from S3 (s3://BUCKET/PREFIX/runs/: the run's bucket and aws.prefix, "
                        "printed by the run as 'run state: ...'), from any machine; default $FORGE_RUNS_URI")


def _run_store(args):
    """The S3 runs folder of ``--runs-uri`` (tasks/run/store.py), through the project's one client factory."""
    from tasks.aws.clients import make_clients
    from tasks.config import AwsConfig
    from tasks.run.store import S3RunStore

    endpoint = getattr(args, "endpoint", None)
    aws = AwsConfig(endpoint_url=endpoint,
                    region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1")
    with aws_target(endpoint, 1.0, Path(".forge") / "emulator-state") if endpoint else _noop():
        return S3RunStore.at(make_clients(aws).s3, args.runs_uri)   # an emulator endpoint: dummy credentials


def _fetch_run(args) -> str | None:
    """`forge rerun --runs-uri`: the run's manifest from S3 into the local runs folder (its cache; S3 wins, as it
    may hold a newer attempt made on another machine). An error message, or None."""
    from tasks.run.manifest import Manifest

    try:
        found = _run_store(args).get(args.run_id)
    except ValueError as err:
        return str(err)
    if found is None:
        return f"no run {args.run_id!r} under {args.runs_uri}"
    path = Path(args.runs_dir) / args.run_id / "manifest.json"
    Manifest(path, found[0]).save()
    return None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", default=None, help="AWS endpoint URL for every service (e.g. an emulator)")
    p.add_argument("--emulator", action="store_true",
                   help="always use the embedded local emulator, even when AWS settings are present")
    p.add_argument("--runs-dir", default=os.environ.get("FORGE_RUNS_DIR", "runs"))
    p.add_argument("--speed", type=float, default=3000.0, help="virtual-clock speed of the embedded emulator")
    p.add_argument("--json", action="store_true", help="print the final manifest as JSON")


# ---------------------------------------------------------------------------------------------
def _has_aws_settings() -> bool:
    if any(os.environ.get(k) for k in AWS_SETTINGS):
        return True
    home = Path.home() / ".aws"
    return (home / "credentials").exists() or (home / "config").exists()


@contextmanager
def aws_target(endpoint: str | None, speed: float, state_dir: Path, force_emulator: bool = False):
    """Set the standard AWS settings for this process; start the emulator when nothing is configured."""
    saved = dict(os.environ)
    handle = None
    try:
        if endpoint:
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            for k, v in DUMMY_CREDENTIALS.items():
                os.environ.setdefault(k, v)
        elif force_emulator or not _has_aws_settings():
            for k in AWS_SETTINGS + ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
                os.environ.pop(k, None)
            from emulator.testing import start_subprocess

            print(f"no AWS settings found: starting the local Bedrock emulator (speed ×{speed:g})", file=sys.stderr)
            with detached_children():   # a Ctrl-C of the terminal must not take AWS away mid-teardown
                handle = start_subprocess(speed=speed, state_dir=state_dir)
            os.environ["AWS_ENDPOINT_URL"] = handle.url
            os.environ.update(DUMMY_CREDENTIALS)
            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            print(f"emulator at {handle.url} (ledger: {handle.url}/_emulator/ledger)", file=sys.stderr)
        yield handle
    finally:
        if handle is not None:
            handle.terminate()
            print("emulator stopped", file=sys.stderr)
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def detached_children():
    """Children started inside this block get their own session: a Ctrl-C (SIGINT to the terminal's whole process
    group) reaches only `forge run` itself, which then tears down serving with its helpers still alive, and stops
    them afterwards. Without it the temporary Prefect server and the emulator died with the first Ctrl-C and the
    run hung for minutes retrying them."""
    import subprocess
    from functools import partial
    from unittest import mock

    with mock.patch.object(subprocess, "Popen", partial(subprocess.Popen, start_new_session=True,
                                                        preexec_fn=_die_with_parent)):
        yield


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `forge run` dies (even by SIGKILL), so a killed run leaves no
    orphan server behind (Linux prctl PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))   # 1 = PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the child may outlive a killed parent
        pass


@contextmanager
def prefect_api():
    """Use the configured Prefect API; with none, start a temporary local server (what Prefect would do on its
    own) in its own session, and stop it on the way out."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield None
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    with detached_children():
        server.start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            try:
                yield server
            finally:
                _drain_prefect_workers()   # the run's last logs and events reach the server before it stops
    finally:
        server.stop()


def _drain_prefect_workers() -> None:
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=2)
        EventsWorker.drain_all(timeout=2)
    except Exception:  # noqa: BLE001 - best effort: the run's record is the manifest
        pass


INTERRUPTED = 130   # the shell's code for "stopped by SIGINT"


def _exit_code(manifest: dict) -> int:
    status = manifest.get("status")
    if status == "succeeded":
        return 0
    if status == "gate_failed":
        return 3
    return 1


def _run_flow(config, args, run_id: str | None = None, rerun_from: str | None = None) -> int:
    from flows.customize import customize_model
    from tasks.run.manifest import Manifest

    state_dir = Path(args.runs_dir) / ".emulator-state"
    try:
        with aws_target(args.endpoint, args.speed, state_dir, force_emulator=args.emulator), prefect_api():
            if config is not None and args.endpoint:
                config.aws.endpoint_url = None  # endpoint travels through the standard env setting
            if config is not None:
                refused = live_preflight(config, getattr(args, "config", "config"))
                if refused:
                    for line in refused:
                        print(line, file=sys.stderr)
                    return 2
            from prefect import tags

            # tagged like the deployments' runs: failure notifications, the zombie automation and the sweep's
            # stuck-cancellation check see CLI runs too
            from tasks.run.stop import ctrl_c_recorded

            with tags("bedrock-forge", "forge-cli"), ctrl_c_recorded():
                state = customize_model(config=config, run_id=run_id, rerun_from=rerun_from,
                                        runs_dir=args.runs_dir, return_state=True)
    except KeyboardInterrupt:
        return _interrupted(args, run_id, config)
    result = None
    try:
        result = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001
        result = None
    from tasks.data.problems import DataValidationError

    if isinstance(result, DataValidationError):   # found by prepare (e.g. a split below the model's minimum)
        for line in result.lines():
            print(line, file=sys.stderr)
        return 2
    manifest_path = result.get("manifest") if isinstance(result, dict) else None
    if manifest_path is None:
        # failed run: find the manifest it wrote (newest run of this name, or the given run id)
        manifest_path = _latest_manifest(args.runs_dir, run_id, config.name if config else None)
    if manifest_path is None:
        print(f"run failed before writing a manifest: {state.message or state.name}", file=sys.stderr)
        return 1
    manifest = Manifest.load(manifest_path).data
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print_summary(manifest, Path(manifest_path))
        if state.is_failed() and manifest.get("status") not in ("gate_failed",):
            print(f"\nFAILED: {manifest.get('error') or state.message}", file=sys.stderr)
            print(f"on-call: fix the cause, then `forge rerun {manifest['run_id']}` "
                  f"(resumes at {_first_unfinished(manifest) or 'the end'})", file=sys.stderr)
    return _exit_code(manifest)


def _interrupted(args, run_id: str | None, config) -> int:
    """Ctrl-C: the flow's teardown ran (serving deleted, manifest ``interrupted``); say what is left."""
    from tasks.run.manifest import Manifest

    path = _latest_manifest(args.runs_dir, run_id, config.name if config else None)
    print("\ninterrupted (Ctrl-C)", file=sys.stderr)
    if path is None:
        return INTERRUPTED
    manifest = Manifest.load(path).data
    print_summary(manifest, Path(path))
    print(f"resume with `forge rerun {manifest['run_id']}`", file=sys.stderr)
    return INTERRUPTED


def _first_unfinished(manifest: dict) -> str | None:
    from tasks.run.manifest import STEPS

    for s in STEPS:
        if (manifest.get("steps", {}).get(s) or {}).get("status") not in ("completed", "skipped"):
            return s
    return None


def _latest_manifest(runs_dir: str, run_id: str | None, name: str | None) -> str | None:
    from tasks.run.names import check_run_id

    root = Path(runs_dir)
    if run_id:
        p = root / check_run_id(run_id) / "manifest.json"
        return str(p) if p.exists() else None
    cands = sorted(root.glob(f"{name or '*'}-*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return str(cands[-1]) if cands else None


def cmd_run(args) -> int:
    from forge.commands import load_config_or_report

    config = load_config_or_report(args.config)
    if config is None:
        return 2
    problems = preflight(config, args.config)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"{args.config}: fix the problems above, then run again (`forge validate {args.config}` "
              "checks without running)", file=sys.stderr)
        return 2
    return _run_flow(config, args)


def preflight(config, config_path: str) -> list[str]:
    """Bad input fails here, located, before Prefect starts and before any AWS call: the config's
    settings and every raw record (one streaming pass; split-level limits are checked by prepare)."""
    from tasks.data.validate import validate_config, validate_source

    lines = [str(p) for p in validate_config(config, config_path)]
    if "://" not in config.data.source:
        report = validate_source(config.data.source, config.base_model, config.customization_type,
                                 columns=config.data.columns, system_prompt=config.data.system_prompt,
                                 prompt_template=config.data.prompt_template,
                                 teacher=config.distillation.teacher_model if config.distillation else None,
                                 media_bucket=config.aws.bucket)
        lines += report.lines()
    return lines


def live_preflight(config, source: str, clients=None) -> list[str]:
    """The read-only live check against Bedrock (tasks/preflight.py) before the flow starts: the refusals as
    ``CONFIG:LINE: field: message (fix)`` lines ([] = go), warnings printed. ``clients``: the caller's (made from
    ``config.aws`` when not given)."""
    from tasks.aws.clients import make_clients
    from tasks.preflight import PreflightRefused, preflight_run

    try:
        report = preflight_run(clients or make_clients(config.aws), config, source=source)
    except PreflightRefused as err:
        return [str(p) for p in err.problems]
    for w in report.warnings:
        print(f"{source}: warning: {w}", file=sys.stderr)
    return []


def cmd_rerun(args) -> int:
    from tasks.run.manifest import Manifest

    if getattr(args, "runs_uri", None):
        problem = _fetch_run(args)
        if problem:
            print(f"forge rerun: {problem}", file=sys.stderr)
            return 2
    try:
        manifest = Manifest.find(args.runs_dir, args.run_id)
    except (FileNotFoundError, ValueError) as err:   # no such run / a run id that is a path (InvalidRunId)
        print(f"forge rerun: {err}", file=sys.stderr)
        return 2
    step = args.from_step or _first_unfinished(manifest.data)
    if step is None:
        # a finished run: check it against AWS (every step adopts what exists, the evaluation recorded in S3 is
        # reused) — no mutating call. `--from evaluate` re-serves and re-evaluates on purpose.
        print(f"{args.run_id} has finished every step: checking it against AWS (nothing is redone; "
              "`--from evaluate` re-evaluates)", file=sys.stderr)
        return _run_flow(None, args, run_id=args.run_id, rerun_from=None)
    if step == "teardown":
        step = "evaluate"
    print(f"rerunning {args.run_id} from step {step!r}", file=sys.stderr)
    return _run_flow(None, args, run_id=args.run_id, rerun_from=step)


_BY = {"finally": "the run itself", "watchdog": "the run's watchdog (the run's process had died)"}


def print_summary(manifest: dict, path: Path, state=None) -> None:
    """``state``: `forge status`'s verdict (tasks/run/status.py RunState), shown when it differs from the status."""
    from tasks.run.manifest import GUARD, STEPS

    print(f"\nrun {manifest['run_id']}  (run key {manifest.get('run_key')})  status: {manifest.get('status')}")
    if state is not None and state.label != manifest.get("status"):
        print(f"  state: {state.label}" + (f" at {state.step}" if state.step else "") + f" — {state.why}")
        for arn in state.serving:
            print(f"  serving recorded and not torn down: {arn} (`forge resources` lists what bills)")
    steps = manifest.get("steps", {})
    for s in [STEPS[0], GUARD, *STEPS[1:]]:
        st = steps.get(s)
        if s == GUARD and not st:
            continue   # the spend guard shows only when it refused a run (or a rerun got past it)
        if not st:
            print(f"  {s:<12} -")
            continue
        took = manifest.get("timings", {}).get(s)
        extra = " (adopted)" if st.get("adopted") else ""
        err = f"  error: {st['error'][:160]}" if st.get("error") else ""
        print(f"  {s:<12} {st.get('status', '?'):<10} {f'{took:.1f}s' if took is not None else '':>8}{extra}{err}")
    metrics = manifest.get("metrics") or {}
    if metrics.get("base") and metrics.get("custom"):
        print("\n  metric                 base     custom")
        for k, v in metrics["custom"].items():
            b = metrics["base"].get(k)
            if isinstance(v, int | float) and isinstance(b, int | float):
                print(f"  {k:<20} {b:>8.4f} {v:>10.4f}")
    gate = manifest.get("gate") or {}
    if gate:
        print(f"\n  quality gate: {'PASSED' if gate.get('passed') else 'FAILED'} — {gate.get('rule')}")
        for r in gate.get("reasons", []):
            print(f"    {r}")
    td = manifest.get("teardown")
    if td is not None:
        gone = (td.get("deleted") or []) + (td.get("already_gone") or [])
        print(f"\n  teardown: {len(td.get('deleted') or [])} serving resource(s) deleted"
              f"{', none left running' if not td.get('errors') else ', ERRORS: ' + '; '.join(td['errors'])}"
              + (f" ({', '.join(gone)})" if gone else "")
              + (f" by {_BY.get(td['by'], td['by'])}" if td.get("by") else ""))
        for arn in td.get("alive") or []:
            print(f"  STILL BILLING: {arn} — the sweep deletes it once this run's heartbeat is gone "
                  "(`forge sweep`); or delete it now: `aws bedrock delete-provisioned-model-throughput "
                  f"--provisioned-model-id {arn}`", file=sys.stderr)
    cost = manifest.get("cost") or {}
    if cost.get("estimated_usd") is not None:
        print(f"  estimated cost: ${cost['estimated_usd']:.2f}")
    print(f"\n  manifest: {path}")
    report = manifest.get("report") or {}
    if report.get("report_md"):
        print(f"  report:   {report['report_md']}")
        charts = [report[k] for k in ("metrics_chart", "per_class_chart", "loss_chart") if report.get(k)]
        if charts:
            print(f"  charts:   {', '.join(charts)}")


def _status_from_store(args) -> int:
    """`forge status --runs-uri s3://...`: the runs as S3 has them, no local state needed."""
    try:
        store = _run_store(args)
        if args.run_id:
            found = store.get(args.run_id)
            if found is None:
                print(f"forge status: no run {args.run_id!r} under {args.runs_uri}", file=sys.stderr)
                return 2
            if args.json:
                print(json.dumps(found[0], indent=2))
            else:
                print_summary(found[0], Path(store.key(args.run_id)), judged(found[0], store.s3, store.bucket))
            return 0
        docs = [d for d in (store.get(rid) for rid in store.run_ids()) if d is not None]
    except ValueError as err:
        print(f"forge status: {err}", file=sys.stderr)
        return 2
    return _print_rows([d for d, _ in docs], args, args.runs_uri, store.s3, store.bucket)


def _prefect_state(flow_run_id: str | None) -> dict | None:
    """The flow run's state from the Prefect API in PREFECT_API_URL (None: no API configured, no such run, or no
    answer within 5 s — unknown, never a guess)."""
    api = os.environ.get("PREFECT_API_URL")
    if not api or not flow_run_id or flow_run_id == "local":
        return None
    import httpx

    try:
        r = httpx.get(f"{api.rstrip('/')}/flow_runs/{flow_run_id}", timeout=5)
        return (r.json() or {}).get("state") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _serving_heartbeat(doc: dict, s3, bucket: str | None = None):
    """The run's serving heartbeat (tasks/run/liveness.py), read only while the manifest says it serves."""
    from tasks.run.liveness import read_heartbeat
    from tasks.run.status import heartbeat_location_of, recorded_serving

    if doc.get("status") != "running" or not recorded_serving(doc) or s3 is None:
        return None
    where = heartbeat_location_of(doc, bucket)
    if where is None:
        return None
    try:
        return read_heartbeat(s3, f"s3://{where[0]}/{where[1]}")
    except Exception:  # noqa: BLE001 - unknown, not dead: the state stays the manifest's and Prefect's
        return None


def judged(doc: dict, s3=None, bucket: str | None = None):
    """tasks/run/status.py's verdict for one manifest, with what Prefect and S3 say."""
    from tasks.run.status import judge

    # running: is it? interrupted/failed: cancelled or failed, Prefect knows which; an end it cannot change: not asked
    asked = doc.get("status") in (None, "running", "interrupted", "failed")
    prefect = _prefect_state(doc.get("flow_run_id")) if asked else None
    return judge(doc, prefect=prefect, heartbeat=_serving_heartbeat(doc, s3, bucket))


def _print_rows(docs: list[dict], args, where: str, s3=None, bucket: str | None = None) -> int:
    rows = []
    for d in docs:
        st = judged(d, s3, bucket)
        rows.append({"run_id": d["run_id"], "status": d.get("status"), "state": st.label, "step": st.step,
                     "why": st.why, "serving": st.serving, "started": d.get("timings", {}).get("started"),
                     "gate": (d.get("gate") or {}).get("passed")})
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no runs under {where}")
    else:
        for r in rows:
            gate = {True: "gate passed", False: "gate failed", None: ""}[r["gate"]]
            step = f" at {r['step']}" if r["step"] and r["state"] not in ("succeeded", "gate_failed") else ""
            bills = f"  SERVING: {', '.join(r['serving'])}" if r["serving"] and r["state"] != "succeeded" else ""
            print(f"{r['run_id']:<48} {(r['state'] or '?') + step:<34} {r['started']}  {gate}{bills}")
    return 0


def cmd_status(args) -> int:
    from tasks.run.manifest import Manifest

    if getattr(args, "runs_uri", None):
        return _status_from_store(args)
    root = Path(args.runs_dir)
    if args.run_id:
        try:
            m = Manifest.find(root, args.run_id)
        except (FileNotFoundError, ValueError) as err:   # no such run / a run id that is a path (InvalidRunId)
            print(f"forge status: {err}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(m.data, indent=2))
        else:
            print_summary(m.data, m.path, judged(m.data))
        return 0
    docs = []
    for p in sorted(root.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime):
        try:
            docs.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            docs.append({"run_id": p.parent.name, "status": "unreadable"})
    return _print_rows(docs, args, str(root))


def cmd_sweep(args) -> int:
    from flows.sweep import sweep_now
    from tasks.aws.redact import redact

    with aws_target(args.endpoint, 1.0, Path(".forge") / "sweep-emulator-state") if args.endpoint else _noop():
        report = sweep_now(region=args.region, dry_run=args.dry_run, stale_after_s=args.stale_after)
    # account ids out of everything printed
    shown = {**redact(report.model_dump(mode="json")),
             "reasons": {redact(k): redact(v) for k, v in report.reasons.items()}}
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(f"sweep: {verb} {len(report.deleted)} resource(s), kept {len(report.kept)}")
        for arn in report.deleted:
            print(redact(f"  {verb}: {arn} — {report.reasons.get(arn, '')}"))
        for k in shown["kept"]:
            print(f"  kept: {k}")
        for line in shown["settled"]:
            print(f"  {line}")
        for arn in shown["alive"]:
            print(f"  STILL BILLING (delete failed): {arn}", file=sys.stderr)
        for e in shown["errors"]:
            print(f"  error: {e}", file=sys.stderr)
    return 1 if report.errors else 0


@contextmanager
def _noop():
    yield None
