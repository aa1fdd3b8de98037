"""`forge estimate CONFIG [--json] [--raw] [--live]` (docs/design.md §8): tokens, training cost, serving cost, budget
verdict. ``--live``: the read-only pre-flight (GetFoundationModel) and the AWS Price List's prices first.

Exit codes: 0 within budget (or prices unknown and allowed), 2 over budget, refused by a spend guard,
invalid config or invalid data. Problems go to stderr, one per line.
"""

from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """\
Print a cost table for CONFIG and check it against budget.max_usd:

  tokens    characters / the family's characters per token (about 6, Bedrock docs; Claude 3 Haiku 3)
  training  train tokens x epochs x price per 1k tokens
  storage   one month of custom-model storage
  serving   the evaluation window: model units x serving.max_hours (whole hours) x hourly price for
            provisioned throughput, or test-split tokens at on-demand prices; plus the base model's
            on-demand calls for the comparison; with production.mode set, the champion's calls (at most
            evaluation.max_examples: none on a lineage's first run or with recorded outputs; on-demand
            token prices for a deployment, 0 on its hourly-billed provisioned throughput)
  total     against budget.max_usd -> verdict ok | over_budget | unknown_price

Prices, in this order: `pricing:` in the config (train_per_1k_tokens, storage_per_month,
pt_hour_no_commit, pt_hour_commitment, on_demand_input_per_1k, on_demand_output_per_1k); with --live,
the AWS Price List (pricing:GetProducts, read-only, the figures AWS bills today); then the catalog,
which has no confirmed prices: they show as 'unknown'. The run itself reads the Price List before
it spends (budget.live_prices: false turns that off). By default the data is prepared into a
temporary folder first, so the counts are the ones the run will train on and bad data fails here,
every problem located.

With budget.max_usd set, an unknown price refuses the run unless budget.allow_unknown_prices: true
is written out; budget.max_usd: 0 refuses any run that would spend. A serving.commitment (which needs
serving.allow_commitment: true) is priced for its whole term and never bought for the evaluation PT.

exit codes: 0 within budget (or no budget, or prices unknown and budget.allow_unknown_prices: true),
            2 over budget, refused by a spend guard, invalid config or invalid data"""

EPILOG = """\
examples:
  forge estimate examples/banking77.yaml
  forge estimate examples/banking77.yaml --json | jq .total_usd
  forge estimate big.yaml --raw        # skip prepare: count the raw source only (approximate)
  forge estimate examples/banking77.yaml --live   # pre-flight + today's prices from the AWS Price List"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate", help="estimate tokens and cost of a config, and check its budget",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="pipeline config YAML (e.g. examples/banking77.yaml)")
    p.add_argument("--raw", action="store_true",
                   help="count the raw source without preparing it (fast, approximate: no dedupe, no validation)")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.add_argument("--live", action="store_true",
                   help="read-only calls first, in the config's Region: the pre-flight (GetFoundationModel: is the "
                        "base model customizable that way, there, now) and the base model's prices from the AWS "
                        "Price List (pricing:GetProducts)")
    p.set_defaults(func=cmd_estimate)


def _usd(x: float | None) -> str:
    return "unknown" if x is None else f"${x:,.2f}"


def _qty(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"


def render(estimate, config) -> str:
    """The human table."""
    out = [f"cost estimate: {config.name} — {config.base_model}, {config.customization_type.value} "
           f"(counts from {'prepared splits' if estimate.method == 'prepared' else 'the raw source'})", ""]
    out.append(f"  {'tokens':<34} {estimate.train_tokens:,} train tokens "
               f"(characters / {estimate.chars_per_token:g} per token, an approximation: docs/bedrock-facts.md §5)")
    out.append(f"  {'epochs':<34} {estimate.epochs}")
    if estimate.eval_calls:
        out.append(f"  {'evaluation calls':<34} {estimate.eval_calls} examples × 2 models (base, custom)"
                   + (f", the champion's {estimate.champion_calls} at most" if estimate.champion_calls else ""))
    out.append("")
    out.append(f"  {'item':<34} {'quantity':>22}  {'unit price':>18}  {'USD':>12}  source")
    for line in estimate.lines:
        qty = f"{_qty(line['quantity'])} {line['unit']}"
        if "unit_price_in" in line:
            price = f"{_usd(line['unit_price_in'])}/{_usd(line['unit_price_out'])}"
        else:
            price = _usd(line["unit_price"])
        out.append(f"  {line['item']:<34} {qty:>22}  {price:>18}  {_usd(line['usd']):>12}  {line['price_source']}")
        if line.get("detail"):
            out.append(f"      {line['detail']}")
    out.append("")
    for label, value in (("training", estimate.training_usd), ("storage (1 month)", estimate.storage_usd),
                         ("serving (evaluation window)", estimate.serving_usd)):
        out.append(f"  {label:<34} {_usd(value):>12}")
    if estimate.judge_calls:
        out.append(f"  {'judge (at most)':<34} {_usd(estimate.judge_usd):>12}")
    if estimate.champion_calls:
        out.append(f"  {'champion calls (at most)':<34} {_usd(estimate.champion_usd):>12}")
    total = _usd(estimate.total_usd)
    if estimate.total_usd is None:
        total += f" (known part {_usd(estimate.known_usd)})"
    out.append(f"  {'total':<34} {total:>12}")
    budget = "none" if estimate.budget_usd is None else _usd(estimate.budget_usd)
    out.append(f"  {'budget (budget.max_usd)':<34} {budget:>12}")
    out.append(f"  {'verdict':<34} {estimate.verdict:>12}")
    if estimate.unknown:
        out.append("")
        out.append("unknown prices (no confirmed figure; the totals above leave them out):")
        out += [f"  - {u}" for u in estimate.unknown]
    if estimate.notes:
        out.append("")
        out.append("notes:")
        out += [f"  - {n}" for n in estimate.notes]
    return "\n".join(out)


def _progress(n: int) -> None:
    print(f"... {n:,} records read", file=sys.stderr, flush=True)


def _live(config, source: str):
    """(the Price List's figures, 0) after the live pre-flight passed; (None, 2) when it refused (the refusals on
    stderr, located) or Bedrock could not be asked (the error, with what to do)."""
    from forge.commands.run import live_preflight
    from tasks.aws.clients import make_clients
    from tasks.aws.errors import describe_error
    from tasks.estimate import live_prices

    try:
        clients = make_clients(config.aws)
        refused = live_preflight(config, source, clients)      # prints the pre-flight's warnings
    except Exception as err:  # noqa: BLE001 - no credentials, no network: one line, not a traceback
        print(f"{source}: the live check could not ask Bedrock in {config.aws.region}: {describe_error(err)}",
              file=sys.stderr)
        return None, 2
    if refused:
        for line in refused:
            print(line, file=sys.stderr)
        return None, 2
    return live_prices(clients.pricing, config), 0


def cmd_estimate(args) -> int:
    from forge.commands import load_config_or_report
    from tasks.estimate import BudgetExceeded, check_budget, estimate_from_config

    config = load_config_or_report(args.config)
    if config is None:
        return 2
    live = None
    if getattr(args, "live", False):
        live, code = _live(config, args.config)
        if code:
            return code
    try:
        estimate = estimate_from_config(config, method="raw" if args.raw else "auto", progress=_progress, live=live)
    except Exception as err:  # noqa: BLE001 - people get located messages, not a traceback
        lines = getattr(err, "lines", None)
        if callable(lines):              # tasks.data.validate.DataValidationError: every data problem
            for line in lines():
                print(line, file=sys.stderr)
            return 2
        if isinstance(err, (ValueError, OSError)):
            print(f"{args.config}: {err}", file=sys.stderr)
            return 2
        raise
    refusal = None
    try:
        check_budget(estimate, config)
    except BudgetExceeded as err:
        refusal = str(err)
    if args.json:
        print(json.dumps({**estimate.model_dump(mode="json"), "refused": refusal}, indent=2))
    else:
        print(render(estimate, config))
    if refusal:
        print(f"\nREFUSED: {refusal}", file=sys.stderr)
        return 2
    return 0
