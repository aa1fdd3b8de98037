"""The emulator's virtual clock: real time multiplied by a speed factor.

Virtual time starts at the real wall-clock time when the state was first created and then runs
``speed`` times faster than real time, so an emulated 2-hour training job takes 2 h / speed. Lifecycles run on
virtual time; every time the emulator *reports* on the wire (creationTime, endTime, lastModifiedTime, status
timestamps) is the real wall-clock moment that virtual instant happened (``wall``), never later than now: a
client comparing with its own clock (``creationTimeBefore=now``, S3 ``LastModified``) agrees. The ledger keeps
virtual times (``t``) for backward compatibility. The anchor (and the anchors of earlier speeds) is persisted, so a
restarted emulator continues the same timeline (time passes while it is down, as it does on AWS).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class VirtualClock:
    speed: float = 1.0
    anchor_real: float = 0.0      # real epoch seconds at the anchor
    anchor_virtual: float = 0.0   # virtual epoch seconds at the anchor
    earlier: list | None = None   # [(anchor_real, anchor_virtual, speed)] of earlier speeds, oldest first

    @classmethod
    def start(cls, speed: float) -> VirtualClock:
        now = time.time()
        return cls(speed=float(speed), anchor_real=now, anchor_virtual=now)

    def now(self) -> float:
        """Virtual epoch seconds."""
        return self.anchor_virtual + (time.time() - self.anchor_real) * self.speed

    def set_speed(self, speed: float) -> None:
        """Change the speed without a jump in virtual time."""
        v = self.now()
        self.earlier = [*(self.earlier or []), (self.anchor_real, self.anchor_virtual, self.speed)]
        self.anchor_real, self.anchor_virtual, self.speed = time.time(), v, float(speed)

    def real_of(self, virtual: float) -> float:
        """The real epoch seconds at which virtual time was (or will be) ``virtual`` (piecewise linear)."""
        for ar, av, sp in reversed([*(self.earlier or []), (self.anchor_real, self.anchor_virtual, self.speed)]):
            if virtual >= av:
                return ar + (virtual - av) / sp
        ar, av, sp = (self.earlier or [(self.anchor_real, self.anchor_virtual, self.speed)])[0]
        return ar + (virtual - av) / sp

    def wall(self, virtual: float) -> float:
        """What the wire reports for a virtual instant: its real time, clamped to now (never in the future)."""
        return min(self.real_of(virtual), time.time())

    def real_seconds(self, virtual_seconds: float) -> float:
        return virtual_seconds / self.speed

    def to_dict(self) -> dict:
        return {"speed": self.speed, "anchor_real": self.anchor_real, "anchor_virtual": self.anchor_virtual,
                "earlier": [list(x) for x in self.earlier or []]}

    @classmethod
    def from_dict(cls, d: dict, speed: float | None = None) -> VirtualClock:
        c = cls(speed=float(d["speed"]), anchor_real=float(d["anchor_real"]), anchor_virtual=float(d["anchor_virtual"]),
                earlier=[tuple(float(v) for v in x) for x in d.get("earlier") or []])
        if speed is not None and float(speed) != c.speed:
            c.set_speed(speed)
        return c
