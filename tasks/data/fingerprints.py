"""Per-record dedupe keys: what pass 1 of ``prepare`` keeps for each good record.

``dedupe_key_text`` is the near-duplicate normalisation (NFKC, case-folded, words only);
``dedupe_key`` the same as UTF-8 bytes (fast path for ASCII); ``fingerprints`` the four 64-bit keys of
one record; ``KeyScan`` gathers them, with a label id, the character count and the line, into the
column files of ``tasks.data.keys.KeyStore`` (fixed-size numbers: the text is never held).
"""

from __future__ import annotations

import re
import unicodedata
from array import array

from tasks.data import keys
from tasks.data.formats import Example
from tasks.data.rules import Rules

LABEL_MAX_DISTINCT = 200       # completions look like labels: at most this many distinct values ...
LABEL_MAX_CHARS = 64           # ... each at most this long ...
LABEL_MAX_SHARE = 0.5          # ... and distinct values at most half the records
SHORT_CHARS = 3

_WORD = re.compile(r"\w+")
# ASCII text: the same words as _WORD.findall(text.lower()) with one table lookup per byte (no regex):
# word characters ([A-Za-z0-9_]) lower-cased, every other byte a space, then split on the spaces.
_ASCII_WORDS = bytes((c if chr(c).isalnum() or c == 95 else 32) if c < 128 else 32 for c in range(256)).lower()


def dedupe_key_text(text: str) -> str:
    """Near-duplicate key: NFKC, case-folded, words only (punctuation and spacing ignored)."""
    if text.isascii():
        return " ".join(text.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split())
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def dedupe_key(text: str) -> bytes:
    """``dedupe_key_text(text)`` as UTF-8 bytes, without the round trip through str for ASCII text
    (the bytes are equal exactly when the normalized texts are)."""
    if text.isascii():
        key = text.encode("ascii").translate(_ASCII_WORDS)
        while b"  " in key:                 # runs of spaces -> one (cheaper than split + join)
            key = key.replace(b"  ", b" ")
        return key.strip(b" ")
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold())).encode("utf-8")


class _AnswerKeys(dict):
    """``dedupe_key`` of short answers, remembered: label-like completions repeat a few values."""

    def __missing__(self, text: str) -> bytes:
        if len(self) >= 4096:
            self.clear()
        key = self[text] = dedupe_key(text)
        return key


def fingerprints(ex: Example, texts: list[str]) -> tuple[int, int, int, int]:
    """(exact, near, prompt, answer) 64-bit keys of one record.

    Python's own ``hash`` (SipHash, 64-bit): only equality within one run matters — group ids are
    renumbered by first occurrence before anything seeded uses them, so the split does not depend on
    the per-process hash seed. Near-duplicate keys hash ``dedupe_key_text`` (as UTF-8 bytes)."""
    n_prompt = dedupe_key(ex.prompt)
    n_answer = dedupe_key(ex.completion)
    n_system = dedupe_key(ex.system) if ex.system else b""
    if len(texts) <= 3:       # single exchange: the Example holds every text
        near = hash((n_system, n_prompt, n_answer))
    else:                     # multi-turn formatted record: every turn counts
        near = hash(tuple(dedupe_key(t) for t in texts))
    return hash(tuple(texts)), near, hash((n_system, n_prompt)), hash(n_answer)


class KeyScan:
    """What pass 1 keeps per good record: fixed-size numbers (``tasks.data.keys.COLUMNS``), gathered in
    ``array`` buffers and appended to the on-disk ``KeyStore`` every ``keys.CHUNK`` records.

    ``exact``/``near``/``prompt``: 64-bit keys (``fingerprints``); ``answer``: the answer key's low 32
    bits (it only tells answers apart within one prompt's records, for the conflict count); ``label``:
    a small label id (-1: none); ``chars``: characters of the record's texts; ``line``: its line."""

    def __init__(self, rules: Rules, store: keys.KeyStore) -> None:
        self.store = store
        self._new_buffers()
        self.labels: dict[str, int] | None = {}
        self._answers = _AnswerKeys()
        self.short_prompts = 0
        self.short_completions = 0
        self.near_limit = 0
        lim = rules.limits.max_tokens_per_record
        self._near_chars: int | None = None        # more characters than this: > 90 % of the token limit
        if lim is not None:
            c = max(0, int(0.9 * lim * (rules.limits.chars_per_token or 6.0)) - 2)
            while rules.tokens(c + 1) <= 0.9 * lim:
                c += 1
            while c > 0 and rules.tokens(c) > 0.9 * lim:
                c -= 1
            self._near_chars = c

    def _new_buffers(self) -> None:
        self.exact = array("q")
        self.near = array("q")
        self.prompt = array("q")
        self.answer = array("I")
        self.label = array("h")
        self.chars = array("i")
        self.line = array("q")

    def flush(self) -> None:
        if len(self.exact):
            self.store.append({c: getattr(self, c) for c in keys.COLUMNS})
            self._new_buffers()

    def add(self, item) -> None:
        ex, texts = item.example, item.texts
        prompt, completion, system = ex.prompt, ex.completion, ex.system
        n_prompt = dedupe_key(prompt)
        n_answer = self._answers[completion] if len(completion) <= LABEL_MAX_CHARS else dedupe_key(completion)
        n_system = dedupe_key(system) if system else b""
        if len(texts) <= 3:       # as fingerprints()
            near = hash((n_system, n_prompt, n_answer))
        else:
            near = hash(tuple(dedupe_key(t) for t in texts))
        self.exact.append(hash(tuple(texts)))
        self.near.append(near)
        self.prompt.append(hash((n_system, n_prompt)))
        self.answer.append(hash(n_answer) & 0xFFFFFFFF)
        chars = sum(map(len, texts))
        self.chars.append(min(chars, 2**31 - 1))
        self.line.append(item.line)
        self._tally(prompt, completion, chars)

    def _tally(self, prompt: str, completion: str, chars: int) -> None:
        """The per-record counts and the label id that ``add`` and ``add_pc`` share; flushes full buffers."""
        if len(prompt.strip()) < SHORT_CHARS:
            self.short_prompts += 1
        c = completion.strip()
        if completion and len(c) < SHORT_CHARS:
            self.short_completions += 1
        if self._near_chars is not None and chars > self._near_chars:
            self.near_limit += 1
        lid = -1
        labels = self.labels
        if labels is not None:
            if not c or len(c) > LABEL_MAX_CHARS:
                self.labels = None
            else:
                lid = labels.get(c, -1)
                if lid < 0:
                    if len(labels) >= LABEL_MAX_DISTINCT:
                        self.labels = None
                        lid = -1
                    else:
                        lid = labels[c] = len(labels)
        self.label.append(lid)
        if len(self.exact) >= keys.CHUNK:
            self.flush()

    def add_pc(self, line: int, prompt: str, completion: str, chars: int) -> None:
        """``add`` for a record with no system text and the texts [prompt, completion] (the scanner's
        sink for formatted prompt/completion JSONL): the same keys and counts, no Item built."""
        n_prompt = dedupe_key(prompt)
        n_answer = self._answers[completion] if len(completion) <= LABEL_MAX_CHARS else dedupe_key(completion)
        self.exact.append(hash((prompt, completion)))
        self.near.append(hash((b"", n_prompt, n_answer)))
        self.prompt.append(hash((b"", n_prompt)))
        self.answer.append(hash(n_answer) & 0xFFFFFFFF)
        self.chars.append(min(chars, 2**31 - 1))
        self.line.append(line)
        self._tally(prompt, completion, chars)
