"""Provisioned Throughput capacity: a token bucket per PT, in real (wall-clock) time.

A model unit serves a number of input + output tokens per minute (emulator/facts/capacity.yaml: an emulator
default, AWS publishes no figure). A call is admitted while the PT's bucket holds tokens; its tokens are charged
once the answer is known, so the bucket may go into debt and the next calls are throttled
(ThrottlingException, 429) until it refills. Over any window longer than the burst, a PT serves at most its
capacity: the evaluator's concurrency is tested against what the PT can serve. Real time, not virtual: the
speed-up is for lifecycles; a benchmark measures real throughput.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    def __init__(self, tokens_per_minute: float, burst_seconds: float, clock=time.monotonic):
        self.rate = tokens_per_minute / 60.0           # tokens per second
        self.size = max(1.0, self.rate * burst_seconds)
        self.level = self.size
        self._clock = clock
        self._t = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.size, self.level + (now - self._t) * self.rate)
        self._t = now

    def admit(self) -> bool:
        """True when a call may start (the bucket is not empty or in debt)."""
        with self._lock:
            self._refill()
            return self.level > 0

    def charge(self, tokens: float) -> None:
        with self._lock:
            self._refill()
            self.level -= tokens

    def retry_after_s(self) -> float:
        with self._lock:
            self._refill()
            return max(0.0, -self.level / self.rate) if self.rate > 0 else 0.0


class Capacity:
    """The PTs' buckets of one account (all Regions), keyed by PT ARN; ``tokens_per_minute`` per model unit."""

    def __init__(self, tokens_per_minute: float, burst_seconds: float):
        self.tokens_per_minute = float(tokens_per_minute)
        self.burst_seconds = float(burst_seconds)
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return self.tokens_per_minute <= 0

    def bucket(self, pt_arn: str, model_units: int) -> TokenBucket | None:
        if self.unlimited:
            return None
        with self._lock:
            b = self._buckets.get(pt_arn)
            if b is None:
                b = self._buckets[pt_arn] = TokenBucket(self.tokens_per_minute * max(1, model_units),
                                                        self.burst_seconds)
            return b

    def forget(self, pt_arn: str) -> None:
        with self._lock:
            self._buckets.pop(pt_arn, None)

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()
