"""The emulator's virtual clock: real time multiplied by a speed factor.

Virtual time starts at the real wall-clock time when the state was first created and then runs
``speed`` times faster than real time, so an emulated 2-hour training job takes 2 h / speed. Everything
the emulator reports (creationTime, endTime, ...) is virtual time. The anchor is persisted, so a
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
        self.anchor_real, self.anchor_virtual, self.speed = time.time(), v, float(speed)

    def real_seconds(self, virtual_seconds: float) -> float:
        return virtual_seconds / self.speed

    def to_dict(self) -> dict:
        return {"speed": self.speed, "anchor_real": self.anchor_real, "anchor_virtual": self.anchor_virtual}

    @classmethod
    def from_dict(cls, d: dict, speed: float | None = None) -> VirtualClock:
        c = cls(speed=float(d["speed"]), anchor_real=float(d["anchor_real"]), anchor_virtual=float(d["anchor_virtual"]))
        if speed is not None and float(speed) != c.speed:
            c.set_speed(speed)
        return c
