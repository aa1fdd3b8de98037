"""`forge validate` and `forge prepare` (docs/design.md §8).

Output convention: problems go to **stdout**, one per line as ``FILE:LINE: field: message (fix)``,
followed by one summary line; progress and warnings go to **stderr** (so ``forge validate ... > problems.txt``
captures exactly the problems). With ``--json`` stdout holds one JSON document instead.

``forge validate CONFIG.yaml`` checks a pipeline config: its settings (``tasks.data.validate.validate_config``)
and its data through a dry-run ``prepare`` into a temporary folder (every record, the split's counts).

Exit codes: 0 valid / prepared, 2 invalid input (data, model/type pair, columns, split, config), 1 cannot write.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

TYPES_HELP = "fine-tuning | continued-pretraining | distillation | reinforcement (default: fine-tuning)"
COLUMNS_HELP = ("map raw columns to fields, e.g. prompt=text,completion=category "
                "(fields: prompt, completion, system, text; text = continued pre-training input)")

EPILOG_VALIDATE = """\
examples:
  forge validate data/train.jsonl --base-model amazon.nova-micro-v1:0:128k
  forge validate banking77.csv --base-model anthropic.claude-3-haiku-20240307-v1:0:200k \\
      --columns prompt=text,completion=category
  forge validate corpus.jsonl --base-model amazon.titan-text-express-v1:0:8k --type continued-pretraining
  forge validate train.jsonl --validation validation.jsonl \
      --base-model meta.llama3-1-8b-instruct-v1:0:128k   # both files; AWS counts them together (Llama: 100..10,000)

  forge validate examples/banking77.yaml          # a pipeline config: its data and its settings
  forge validate s3://my-bucket/train.jsonl --base-model amazon.nova-micro-v1:0:128k \\
      --endpoint http://127.0.0.1:4566             # an S3 object, read from that endpoint (e.g. the emulator)

DATA is raw JSONL / CSV / Parquet (columns mapped with --columns) or JSONL already in the model's
format (detected from its keys). A .yaml/.yml DATA is read as a pipeline config: its data source is
checked with its columns, prompt template and system prompt, and its hyperparameters, region and
AWS names too (--base-model and --type then come from the config).
Every problem is printed as FILE:LINE: field: message (how to fix).
exit status: 0 valid, 2 invalid.
"""

EPILOG_PREPARE = """\
examples:
  forge prepare banking77.csv --base-model amazon.nova-micro-v1:0:128k \\
      --columns prompt=text,completion=category --out prepared/ --split 0.8,0.1,0.1 --seed 42

Writes OUT/train.jsonl, OUT/validation.jsonl, OUT/test.jsonl (omitted when empty) and OUT/report.json
(duplicates, token estimates, label balance). Label-like completions are split stratified.
Nothing is written when the input is invalid: the located problems are printed and the exit status is 2.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check training data against every Bedrock rule for a model + type",
                       description="Check DATA against the format, record-count, token and file-size rules "
                                   "Bedrock applies for the base model and customization type, before any AWS call.",
                       epilog=EPILOG_VALIDATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--role", choices=["train", "validation", "test"], default="train",
                   help="which limits apply: training file (default), validation file, or test (no count limits)")
    p.add_argument("--validation", default=None, metavar="FILE",
                   help="the validation file that goes with a training DATA (local or s3://): checked too, and its "
                        "records counted in the train + validation totals AWS applies (e.g. Llama: 100..10,000)")
    p.add_argument("--max-problems", type=int, default=200, help="print at most this many problems (default 200)")
    p.add_argument("--live", action="store_true",
                   help="with a config: also ask Bedrock (read-only GetFoundationModel, in the config's Region) "
                        "whether the base model and teacher are customizable that way, there, now")
    p.set_defaults(func=_guarded(cmd_validate))

    p = sub.add_parser("prepare", help="convert, check, dedupe and split data into the model's format",
                       description="Read DATA (streamed), map columns, convert to the base model's format, run "
                                   "quality checks, dedupe, and write a seeded (stratified when label-like) split.",
                       epilog=EPILOG_PREPARE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--split", default="0.8,0.1,0.1", metavar="TRAIN,VAL,TEST",
                   help="fractions adding up to 1 (default 0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split and sampling (default 42)")
    p.add_argument("--stratify", choices=["auto", "yes", "no"], default="auto",
                   help="stratify by completion: auto = when completions look like labels")
    p.add_argument("--max-records", type=int, default=None, help="use a seeded sample of at most N records")
    p.add_argument("--no-dedupe", action="store_true", help="keep duplicate records (they still share a split)")
    p.add_argument("--system-prompt", default=None, help="system prompt added to every record")
    p.add_argument("--prompt-template", default="{prompt}", help="template for the prompt, e.g. 'Classify: {prompt}'")
    p.set_defaults(func=_guarded(cmd_prepare))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA",
                   help="JSONL, CSV or Parquet file (forge validate: or a pipeline config YAML)")
    p.add_argument("--base-model", required=p.prog.split()[-1] != "validate", metavar="ID",
                   help="customizable base model id, e.g. amazon.nova-micro-v1:0:128k (see tasks/catalog/catalog.yaml)")
    p.add_argument("--type", dest="ctype", default="fine-tuning", metavar="T", help=TYPES_HELP)
    p.add_argument("--columns", default=None, metavar="MAP", help=COLUMNS_HELP)
    p.add_argument("--teacher", default=None,
                   help="distillation teacher model id (single-turn rule for Anthropic/Llama)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--endpoint", default=None, metavar="URL",
                   help="AWS endpoint URL for an s3:// DATA or data source (e.g. the emulator), like the other verbs; "
                        "default: the environment (AWS_ENDPOINT_URL, else AWS)")


def _guarded(fn):
    """People get a one-line message, not a traceback, even on a bug (FORGE_DEBUG=1 shows it)."""
    import functools
    import os

    @functools.wraps(fn)
    def run(args) -> int:
        try:
            return fn(args)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001
            if os.environ.get("FORGE_DEBUG"):
                raise
            print(f"forge {args.verb}: internal error: {type(err).__name__}: {err} "
                  "(please report it; FORGE_DEBUG=1 shows the traceback)", file=sys.stderr)
            return 1

    return run


class UsageProblem(ValueError):
    pass


def parse_columns(spec: str | None):
    """``prompt=text,completion=category`` -> Columns (unmapped fields keep their defaults)."""
    from tasks.config import Columns

    if not spec:
        return None
    fields = set(Columns.model_fields)
    values: dict[str, str | None] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise UsageProblem(f"--columns: {part!r} is not FIELD=COLUMN with FIELD one of {', '.join(sorted(fields))}")
        values[key] = val.strip() or None
    return Columns(**values)


def _parse_split(spec: str) -> tuple[float, float, float]:
    try:
        parts = [float(x) for x in spec.split(",")]
    except ValueError:
        raise UsageProblem(f"--split: {spec!r} is not three numbers like 0.8,0.1,0.1") from None
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or abs(sum(parts) - 1.0) > 1e-6 or any(x < 0 for x in parts) or parts[0] <= 0:
        raise UsageProblem(f"--split: {spec!r} must be TRAIN,VALIDATION,TEST fractions >= 0 adding up to 1 (train > 0)")
    return parts[0], parts[1], parts[2]


def _progress(n: int) -> None:
    print(f"... {n:,} records read", file=sys.stderr, flush=True)


def _print_problems(lines: list[str], as_json: bool) -> None:
    if not as_json:
        for line in lines:
            print(line)


def cmd_validate(args) -> int:
    from tasks.catalog import CustomizationType

    if args.data.lower().endswith((".yaml", ".yml")):
        if args.validation is not None:
            return _usage(args, "--validation goes with a training data file; a config's split makes its own")
        return _validate_config(args)
    if not args.base_model:
        return _usage(args, "--base-model is required (or pass a pipeline config .yaml as DATA)")
    try:
        ctype = CustomizationType.parse(args.ctype)
        columns = parse_columns(args.columns)
        _endpoint(args)
    except ValueError as err:
        return _usage(args, str(err))
    if args.validation is not None and args.role != "train":
        return _usage(args, f"--validation goes with a training DATA (--role train), not --role {args.role}")
    paired = None
    if args.validation is not None:      # first, so its record count joins the training file's totals
        paired = _validate_file(args, args.validation, "validation", ctype, columns)
    report = _validate_file(args, args.data, args.role, ctype, columns,
                            companion=paired.records if paired is not None else None)
    reports = [report] + ([paired] if paired is not None else [])
    for r in reports:
        for w in r.stats.get("warnings") or []:
            print(f"warning: {w}", file=sys.stderr)
    if args.json:
        doc = report.model_dump(mode="json")
        if paired is not None:
            doc["validation"] = {**paired.model_dump(mode="json"), "ok": paired.ok}
        doc["ok"] = all(r.ok for r in reports)
        print(json.dumps(doc, indent=2))
        return 0 if doc["ok"] else 2
    for r in reports:
        stats = r.stats
        extra = (f" ({stats.get('mode')}, {stats.get('format')}, ~{stats.get('estimated_tokens', 0):,} tokens)"
                 if r.ok else "")
        _print_problems(r.lines(args.max_problems), False)
        print(r.summary() + extra)
    return 0 if all(r.ok for r in reports) else 2


def _validate_file(args, data: str, role: str, ctype, columns, companion: int | None = None):
    """One local or s3:// file (``_validate_s3``) as ``role``; ``companion``: the validation file's record count."""
    from tasks.data.validate import validate_source

    if data.startswith("s3://"):
        return _validate_s3(args, data, role, ctype, columns, companion)
    return validate_source(data, args.base_model, ctype, columns=columns, role=role, teacher=args.teacher,
                           progress=_progress, companion_records=companion)


def _endpoint(args) -> str | None:
    """``--endpoint URL``, checked like ``aws.endpoint_url`` (UsageProblem: a typo must not fall back on AWS)."""
    url = getattr(args, "endpoint", None)
    if url is None:
        return None
    from pydantic import ValidationError

    from tasks.config import AwsConfig

    try:
        AwsConfig(endpoint_url=url)
    except ValidationError as err:
        raise UsageProblem(f"--endpoint: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    return url


def _validate_s3(args, data, role, ctype, columns, companion=None):
    """An s3:// DATA: streamed into a temporary folder after the pre-flight (tasks.data.sources.fetch_s3:
    "object not found" / "access denied" / compressed / UTF-16 are located problems), then validated.
    Only GetObject is called; the connection is ``--endpoint`` or the environment (AWS_PROFILE,
    AWS_ENDPOINT_URL, ...)."""
    import tempfile
    from pathlib import Path

    from tasks.aws.clients import lenient_aws_config, make_clients
    from tasks.config import AwsConfig
    from tasks.data import sources
    from tasks.data.problems import Problem, ValidationReport
    from tasks.data.validate import validate_source

    endpoint = _endpoint(args)
    aws = AwsConfig(endpoint_url=endpoint) if endpoint else lenient_aws_config({})
    with tempfile.TemporaryDirectory(prefix="forge-validate-") as tmp:
        local = Path(tmp) / (Path(data).name or "source")
        try:
            sources.fetch_s3(make_clients(aws).s3, data, local)
        except sources.SourceProblem as e:
            return ValidationReport(source=data, problems=[Problem(file=data, line=e.line, field=e.field,
                                                                        message=e.message, fix=e.fix)],
                                    total_problems=1)
        return validate_source(local, args.base_model, ctype, columns=columns, role=role, teacher=args.teacher,
                               progress=_progress, shown_as=data, companion_records=companion)


def _validate_config(args) -> int:
    """A config: its settings (validate_config), then a dry-run prepare into a temporary folder, which
    checks every record and the split's record counts."""
    import tempfile

    from tasks.config import ConfigError, load_config
    from tasks.data.preparation import prepare
    from tasks.data.problems import DataValidationError, ValidationReport
    from tasks.data.validate import validate_config

    try:
        endpoint = _endpoint(args)
    except UsageProblem as err:
        return _usage(args, str(err))
    try:
        config = load_config(args.data)
    except ConfigError as err:
        return _fail(args, err.problems + [f"{args.data}: {len(err.problems)} problem(s) in the config"])  # exit 2
    if endpoint:     # an s3:// data source and --live go there (the config's own aws.endpoint_url otherwise)
        config = config.model_copy(update={"aws": config.aws.model_copy(update={"endpoint_url": endpoint})})
    problems = validate_config(config, args.data)
    if getattr(args, "live", False):
        problems += _live_problems(config, args.data)
    total = len(problems)
    records = None
    with tempfile.TemporaryDirectory(prefix="forge-validate-") as tmp:
        try:
            prepared = prepare(config, tmp, progress=_progress)
            records = json.loads(open(prepared.report_path, encoding="utf-8").read())["counts"]["raw_records"]
        except DataValidationError as err:
            # prepare repeats the config checks with file "config": validate_config has them with the path + line
            problems += [p for p in err.problems if p.file != "config"]
            total += err.total - sum(1 for p in err.problems if p.file == "config")
    report = ValidationReport(source=config.data.source, records=records or 0, problems=problems, total_problems=total)
    if report.ok:
        summary = f"{args.data}: OK, {report.records:,} record(s) in {config.data.source} (dry-run prepare passed)"
    else:
        summary = f"{args.data}: {report.total_problems} problem(s) in the config and its data ({config.data.source})"
    return _report(args, report, summary)


def _live_problems(config, source: str) -> list:
    """The live pre-flight (tasks/preflight.py) as located problems; its warnings printed."""
    from tasks.aws.clients import make_clients
    from tasks.config import yaml_line
    from tasks.data.problems import Problem
    from tasks.preflight import PreflightRefused, preflight_run

    try:
        report = preflight_run(make_clients(config.aws), config, source=source)
    except PreflightRefused as err:
        return [Problem(file=source, line=yaml_line(source, r.field), field=r.field, message=r.message, fix=r.fix)
                for r in err.refusals]
    for w in report.warnings:
        print(f"{source}: warning: {w}", file=sys.stderr)
    return []


def _report(args, report, summary: str) -> int:
    """A validation report as JSON (``--json``) or as problem lines + one summary line; exit 0 valid, 2 invalid."""
    if args.json:
        doc = report.model_dump(mode="json")
        doc["ok"] = report.ok
        print(json.dumps(doc, indent=2))
    else:
        _print_problems(report.lines(args.max_problems), False)
        print(summary)
    return 0 if report.ok else 2


def cmd_prepare(args) -> int:
    from tasks.data.problems import DataValidationError

    try:
        config = _prepare_config(args)
    except _Refused as err:
        return err.code
    # numpy's first import: the data path uses no BLAS, and one BLAS thread halves its start-up on a busy machine
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from tasks.data.preparation import prepare

    try:
        prepared = prepare(config, args.out, progress=_progress)
    except DataValidationError as err:
        if args.json:
            print(json.dumps({"ok": False, "problems": [p.model_dump() for p in err.problems],
                              "total_problems": err.total}, indent=2))
        else:
            _print_problems(err.lines(), False)
            print(f"{args.data}: {err.total} problem(s); nothing written")
        return 2
    except OSError as err:      # the input's problems are located problems above: this is the output side
        where = err.filename if isinstance(err.filename, str) else args.out
        verb = "cannot read" if where == args.data else "cannot write"
        return _fail(args, [f"{where}: {verb}: {err.strerror or err}; nothing written to {args.out}"], code=1)
    return _print_prepared(args, prepared)


class _Refused(Exception):
    """A usage or config problem already printed; ``code`` is the exit status."""

    def __init__(self, code: int):
        self.code = code


def _prepare_config(args):
    """The PipelineConfig ``forge prepare``'s flags describe (the same model a YAML config builds)."""
    from pydantic import ValidationError

    from tasks.catalog import CustomizationType
    from tasks.config import ConfigError, format_validation_error, parse_config

    try:
        ctype = CustomizationType.parse(args.ctype)
        columns = parse_columns(args.columns)
        train, val, test = _parse_split(args.split)
        endpoint = _endpoint(args)
    except ValueError as err:
        raise _Refused(_usage(args, str(err))) from None
    data: dict = {"source": args.data,
                  "split": {"train": train, "validation": val, "test": test, "seed": args.seed,
                            "stratify": args.stratify},
                  "dedupe": not args.no_dedupe, "prompt_template": args.prompt_template}
    if columns is not None:
        data["columns"] = columns.model_dump()
    if args.system_prompt:
        data["system_prompt"] = args.system_prompt
    if args.max_records:
        data["max_records"] = args.max_records
    raw = {"name": "cli", "base_model": args.base_model, "customization_type": ctype.value, "data": data,
           "preset": None}
    if endpoint:
        raw["aws"] = {"endpoint_url": endpoint}
    if ctype == CustomizationType.DISTILLATION:
        raw["distillation"] = {"teacher_model": args.teacher or "us.amazon.nova-pro-v1:0"}
    if ctype == CustomizationType.REINFORCEMENT_FINE_TUNING:
        # prepare does not call the grader; a placeholder ARN satisfies the config model (never used here)
        raw["rft"] = {"grader_lambda_arn": "arn:aws:lambda:us-east-1:000000000000:function:unused"}
    try:
        return parse_config(raw, source="forge prepare")
    except ConfigError as err:
        raise _Refused(_fail(args, err.problems)) from None
    except ValidationError as err:  # pragma: no cover - parse_config formats these
        raise _Refused(_fail(args, format_validation_error(err, "forge prepare"))) from None


def _print_prepared(args, prepared) -> int:
    report = json.loads(open(prepared.report_path, encoding="utf-8").read())
    for w in report.get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps({"ok": True, "prepared": prepared.model_dump(mode="json"), "report": report}, indent=2))
        return 0
    c = report["counts"]
    for name in ("train", "validation", "test"):
        f = getattr(prepared, name)
        print(f"{name:<11} {f.records:>8,} records  {f.path}" if f else f"{name:<11} {'-':>8}")
    print(f"report      {prepared.report_path}")
    dup = c["exact_duplicates"] + c["near_duplicates"]
    print(f"{args.data}: OK, {c['raw_records']:,} records -> {prepared.format}"
          f"; duplicates {dup:,} ({'dropped' if c['dropped_duplicates'] else 'kept'})"
          f"; {'label-like, stratified' if report['split']['stratified'] else 'not stratified'}"
          f"; ~{prepared.estimated_train_tokens:,} training tokens")
    return 0


def _usage(args, message: str) -> int:
    return _fail(args, [f"forge {args.verb}: {message}"])


def _fail(args, lines: list[str], code: int = 2) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "errors": lines}, indent=2))
    else:
        for line in lines:
            print(line)
    return code
