"""LLM-as-judge (issue 19 item 5): a Bedrock model compares two answers to one prompt against a rubric.

Pairwise, both orders: each pair (challenger vs base, challenger vs champion) is asked twice, the challenger's
answer first as "A", then first as "B". A verdict counts only when both orders name the same answer; orders that
disagree are a tie, so a judge that prefers a position (one that always says "A") gives only ties (position bias
cancelled: Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", §3.4 "swap positions",
https://arxiv.org/abs/2306.05685). An answer that is not a JSON verdict ``{"winner": "A"|"B"|"tie", "reason": ...}``
is never guessed at: it is recorded as unparseable and that example is not counted.

Scores: win / tie / loss rates of the challenger over the counted examples, and score = mean(+1 win, 0 tie,
-1 loss) with a percentile bootstrap CI (tasks.evaluation.metrics.paired_bootstrap against 0).

Cache: every judge call is keyed by sha256(judge model, rubric, the example (system, prompt, reference), answer
A, answer B, the prompt template's version) and its raw answer kept in one S3 document next to the evaluation
record (``<run output>/evaluation/judge/<sha256(model, rubric)[:16]>.json``): a rerun pays for no call. The raw
text is what is kept, so a parser change applies to cached answers too.

A judge that says it is a stand-in (the emulator's: ``"stand_in": "<name>"`` in its JSON) is named as such in
the summary and in the report: on the emulator no model judges anything.

No AWS and no Prefect here: ``call(prompt) -> InvokeResult`` is given by the stage (tasks/evaluate.py
``judge_outputs``), which sends it through tasks/evaluation/invoke.py with retries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from tasks.aws.redact import redact_text
from tasks.run.types import InvokeResult

log = logging.getLogger(__name__)

TEMPLATE_VERSION = "forge-judge-v1"
# the first line of every judge prompt: what a stand-in (the emulator) recognises a judge request by
JUDGE_MARKER = "[forge-judge v1]"

Winner = Literal["A", "B", "tie"]
Outcome = Literal["win", "tie", "loss", "unparseable", "error"]
SCORE = {"win": 1.0, "tie": 0.0, "loss": -1.0}
MAX_FIRST_ERRORS = 3


def judge_prompt(rubric: str, *, prompt: str, reference: str | None, answer_a: str, answer_b: str,
                 system: str | None = None) -> str:
    """The text the judge model gets (one user message)."""
    parts = [JUDGE_MARKER,
             "You compare two answers to the same prompt. Judge only by this rubric:",
             rubric.strip(), ""]
    if system:
        parts += ["<system>", system, "</system>"]
    parts += ["<prompt>", prompt, "</prompt>"]
    if reference:
        parts += ["<reference>", reference, "</reference>"]
    parts += ["<answer_a>", answer_a, "</answer_a>", "<answer_b>", answer_b, "</answer_b>", "",
              'Reply with one JSON object and nothing else: {"winner": "A" or "B" or "tie", '
              '"reason": "one short sentence"}']
    return "\n".join(parts)


class Verdict(BaseModel):
    winner: Winner | None = None           # None: unparseable
    reason: str | None = None
    stand_in: str | None = None            # the responder says it is a stand-in, not a model
    problem: str | None = None             # why it is unparseable


_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)


def parse_verdict(text: str | None) -> Verdict:
    """The first JSON object in ``text`` that has a ``winner`` of A, B or tie (any case); else unparseable."""
    if not text or not text.strip():
        return Verdict(problem="empty answer")
    body = _FENCE.sub("", text)
    dec = json.JSONDecoder()
    seen_winner = None
    for i, ch in enumerate(body):
        if ch != "{":
            continue
        try:
            obj, _ = dec.raw_decode(body, i)
        except ValueError:
            continue
        if not isinstance(obj, dict) or "winner" not in obj:
            continue
        w = obj.get("winner")
        seen_winner = w
        norm = str(w).strip().upper() if isinstance(w, str) else ""
        if norm in ("A", "B", "TIE"):
            stand = obj.get("stand_in")
            return Verdict(winner="tie" if norm == "TIE" else norm, reason=_s(obj.get("reason")),
                           stand_in=_s(stand) if stand else None)
        break
    if seen_winner is not None:
        return Verdict(problem=f"winner {seen_winner!r} is not A, B or tie")
    return Verdict(problem="no JSON object with a winner")


def _s(x: Any) -> str | None:
    return None if x is None else str(x)[:500]


def combine(first: Verdict, second: Verdict) -> Outcome:
    """``first``: the challenger was A; ``second``: the challenger was B. Both orders must agree."""
    if first.winner is None or second.winner is None:
        return "unparseable"
    a = {"A": "win", "B": "loss", "tie": "tie"}[first.winner]
    b = {"B": "win", "A": "loss", "tie": "tie"}[second.winner]
    return a if a == b else "tie"


# ---------------------------------------------------------------------------------------------
# cache


def cache_key(model: str, rubric: str, *, system: str | None, prompt: str, reference: str | None,
              answer_a: str, answer_b: str) -> str:
    blob = json.dumps([TEMPLATE_VERSION, model, rubric, system, prompt, reference, answer_a, answer_b])
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedAnswer(BaseModel):
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None


class JudgeCache(BaseModel):
    """The judge's answers by cache key (in memory; ``load_cache`` / ``save_cache`` keep it in S3)."""

    model: str = ""
    rubric: str = ""
    answers: dict[str, CachedAnswer] = Field(default_factory=dict)
    dirty: bool = Field(False, exclude=True)

    def get(self, key: str) -> CachedAnswer | None:
        return self.answers.get(key)

    def put(self, key: str, answer: CachedAnswer) -> None:
        self.answers[key] = answer
        self.dirty = True


def cache_name(model: str, rubric: str) -> str:
    return hashlib.sha256(json.dumps([TEMPLATE_VERSION, model, rubric]).encode()).hexdigest()[:16]


def cache_uri(output_uri: str, model: str, rubric: str) -> str:
    from tasks.aws.s3uri import child_key, s3_uri, split_s3_uri

    bucket, prefix = split_s3_uri(output_uri)
    return s3_uri(bucket, child_key(prefix, f"evaluation/judge/{cache_name(model, rubric)}.json"))


def load_cache(s3: Any, uri: str, model: str, rubric: str) -> JudgeCache:
    from tasks.aws.s3uri import split_s3_uri

    bucket, key = split_s3_uri(uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as err:
        code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
            return JudgeCache(model=model, rubric=rubric)
        raise
    try:
        cache = JudgeCache.model_validate_json(body)
    except ValueError as err:
        log.warning("%s is not a judge cache (%s): starting an empty one", uri, err)
        return JudgeCache(model=model, rubric=rubric)
    return cache if (cache.model, cache.rubric) == (model, rubric) else JudgeCache(model=model, rubric=rubric)


def save_cache(s3: Any, uri: str, cache: JudgeCache) -> bool:
    """Write the cache when it gained answers; True when written."""
    from tasks.aws.s3uri import split_s3_uri

    if not cache.dirty:
        return False
    bucket, key = split_s3_uri(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=cache.model_dump_json().encode(), ContentType="application/json")
    cache.dirty = False
    return True


# ---------------------------------------------------------------------------------------------
# judging a table


class _Counter:
    def __init__(self) -> None:
        self.calls = self.cached = self.errors = 0
        self.input_tokens = self.output_tokens = 0
        self.stand_in: str | None = None
        self.first_errors: list[str] = []     # what a failed call said (an AccessDenied names the permission)
        self.lock = threading.Lock()


def _ask(call: Callable[[str], InvokeResult], cache: JudgeCache, counter: _Counter, model: str, rubric: str,
         row: Any, answer_a: str, answer_b: str) -> Verdict | None:
    """One order of one pair: the cached answer, else one call (None: the call failed)."""
    kw = {"system": _opt(row.get("system")), "prompt": str(row["prompt"]), "reference": _opt(row.get("reference"))}
    key = cache_key(model, rubric, answer_a=answer_a, answer_b=answer_b, **kw)
    hit = cache.get(key)
    if hit is not None:
        with counter.lock:
            counter.cached += 1
        text = hit.text
    else:
        res = call(judge_prompt(rubric, answer_a=answer_a, answer_b=answer_b, **kw))
        with counter.lock:
            counter.calls += 1
            counter.input_tokens += res.input_tokens or 0
            counter.output_tokens += res.output_tokens or 0
        if res.error is not None:
            with counter.lock:
                counter.errors += 1
                if len(counter.first_errors) < MAX_FIRST_ERRORS:
                    counter.first_errors.append(redact_text(str(res.error))[:300])
            return None
        text = res.text
        with counter.lock:
            cache.put(key, CachedAnswer(text=text, input_tokens=res.input_tokens, output_tokens=res.output_tokens))
    v = parse_verdict(text)
    if v.stand_in:
        with counter.lock:
            counter.stand_in = v.stand_in
    return v


def _opt(x: Any) -> str | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def judge_pair(call: Callable[[str], InvokeResult], cache: JudgeCache, counter: _Counter, *, model: str,
               rubric: str, row: Any, challenger: str, other: str) -> tuple[Outcome, str | None, bool]:
    """(outcome for the challenger, the reason of the first order, whether the two orders disagreed) — both
    orders asked."""
    first = _ask(call, cache, counter, model, rubric, row, challenger, other)
    second = _ask(call, cache, counter, model, rubric, row, other, challenger)
    if first is None or second is None:
        return "error", None, False
    out = combine(first, second)
    why = first.reason if out != "unparseable" else (first.problem or second.problem)
    inconsistent = out == "tie" and not (first.winner == second.winner == "tie")
    return out, why, inconsistent


def rates(outcomes: list[Outcome], *, n_resamples: int = 1000, seed: int = 0,
          confidence: float = 0.95) -> dict[str, Any]:
    """win/tie/loss over the counted outcomes, the score and its bootstrap CI, the unparseable/error counts."""
    from tasks.evaluation.metrics import paired_bootstrap

    counted = [SCORE[o] for o in outcomes if o in SCORE]
    n = len(counted)
    share = (lambda k: k / n) if n else (lambda k: float("nan"))
    ci = paired_bootstrap(np.zeros(n), np.array(counted, dtype=float), n_resamples=n_resamples, seed=seed,
                          confidence=confidence)
    return {"n_judged": len(outcomes), "n_counted": n, "win": share(counted.count(1.0)),
            "tie": share(counted.count(0.0)), "loss": share(counted.count(-1.0)),
            "score": ci["mean_delta"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
            "n_unparseable": outcomes.count("unparseable"), "n_errors": outcomes.count("error")}


def judge_table(df: pd.DataFrame, call: Callable[[str], InvokeResult], cache: JudgeCache, *, model: str,
                rubric: str, against: list[str], max_examples: int | None = None, concurrency: int = 4,
                n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """Judge the challenger (``custom``) against each of ``against`` (column prefixes present in ``df``: base,
    champion) on the examples where both answered (the first ``max_examples`` of them by example id). Adds the
    columns ``judge_vs_<name>`` (outcome) and ``judge_vs_<name>_reason`` to ``df``; returns the summary."""
    counter = _Counter()
    pairs: dict[str, Any] = {}
    for j, other in enumerate(a for a in against if f"{a}_output" in df):
        ok = df["custom_error"].isna() & df[f"{other}_error"].isna()
        rows = df[ok].sort_values("example_id")
        if max_examples is not None:
            rows = rows.head(max_examples)
        before = (counter.calls, counter.cached, counter.input_tokens, counter.output_tokens)

        def one(item: tuple[Any, Any], other: str = other) -> tuple[Any, Outcome, str | None, bool]:
            idx, r = item
            return (idx, *judge_pair(call, cache, counter, model=model, rubric=rubric, row=r,
                                     challenger=str(r["custom_output"]), other=str(r[f"{other}_output"])))

        with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="judge") as pool:
            results = list(pool.map(one, rows.iterrows()))
        df[f"judge_vs_{other}"] = None
        df[f"judge_vs_{other}_reason"] = None
        for idx, out, why, _ in results:
            df.at[idx, f"judge_vs_{other}"] = out
            df.at[idx, f"judge_vs_{other}_reason"] = why
        pairs[other] = {**rates([o for _, o, _, _ in results], n_resamples=n_resamples, seed=seed + j,
                                confidence=confidence),
                        # ties because the two orders named different answers: the judge's position bias, seen
                        "n_order_disagreed": sum(1 for *_, flip in results if flip),
                        "calls": counter.calls - before[0], "cached": counter.cached - before[1],
                        "input_tokens": counter.input_tokens - before[2],
                        "output_tokens": counter.output_tokens - before[3]}
    return {"model": model, "rubric": rubric, "stand_in": counter.stand_in, "confidence": confidence,
            "template": TEMPLATE_VERSION, "pairs": pairs, "calls": counter.calls, "cached": counter.cached,
            "errors": counter.errors, "first_errors": counter.first_errors, "input_tokens": counter.input_tokens,
            "output_tokens": counter.output_tokens}


# ---------------------------------------------------------------------------------------------
# the judge as a gate metric (``gate.metric: judge``, ``gate.champion_metrics: [judge]``)


def as_comparison(summary: dict[str, Any] | None, against: str) -> dict[str, Any] | None:
    """The judge's pair ``against`` (base, champion) in the shape the gate reads a metric's comparison in:
    ``delta`` = the score (win − loss: already the challenger *relative to* the other answer), its CI, ``n`` = the
    counted examples. A pairwise judge gives no per-model value, so ``custom``/``base``/``champion`` are None.
    None when the judge did not run or did not judge that pair (no champion outputs)."""
    pair = ((summary or {}).get("pairs") or {}).get(against)
    if pair is None:
        return None
    n = int(pair.get("n_counted", 0))

    def clean(key: str) -> float | None:
        x = pair.get(key)
        return None if not n or x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    return {"base": None, "custom": None, "champion": None, "delta": clean("score"), "ci_low": clean("ci_low"),
            "ci_high": clean("ci_high"), "n": n, "confidence": summary.get("confidence", 0.95)}


def why_not_judged(summary: dict[str, Any] | None, against: str) -> str:
    """Why the judge's pair ``against`` has no counted example: the calls that failed (with what AWS said), the
    answers that were not verdicts, or no example both models answered."""
    if not summary:
        return "the judge did not run (evaluation.judge is not set)"
    pair = (summary.get("pairs") or {}).get(against)
    if pair is None:
        return f"the judge did not compare the challenger with {against} (no {against} outputs)"
    parts = [f"no example of custom vs {against} was judged: {pair.get('n_judged', 0)} examples asked"]
    if pair.get("n_errors"):
        first = summary.get("first_errors") or []
        parts.append(f"{pair['n_errors']} failed after retries" + (f" (first: {first[0]})" if first else ""))
    if pair.get("n_unparseable"):
        parts.append(f"{pair['n_unparseable']} answers were not a JSON verdict")
    return ", ".join(parts)
