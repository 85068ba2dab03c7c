"""Held-back events: late arrivals at old timestamps, hidden until `POST /__sim/release-late`.

The `late_events` events are part of the seeded dataset but absent from every listing, from
`meta.total` and from `/__sim/expected` until released; then they sit at their own (old) timestamps
among the base events, each in the session of some base event. `LateEvents` holds them sorted
(ts DESC, id DESC) with the arithmetic between base positions and positions in the merged order.
"""

from __future__ import annotations

import bisect
import random

LATE_KEY0 = 1 << 64  # ordinal (id key) of late event 0: far above any base or grown key
TOP_WINDOW_MS = 30 * 60_000  # "top": within the last 30 minutes below the newest event
MIDDLE_HALF_MS = 86_400_000  # "middle": within a day either side of the time range's midpoint


def late_timestamps(count: int, where: str, newest: int, span_ms: int, rng: random.Random) -> list[int]:
    """Epoch ms of late events 0..count-1; all strictly below `newest`, so the newest stays put.

    `both` puts the first half (rounded up) at the top and the rest in the middle.
    """
    top = {"top": count, "middle": 0, "both": count - count // 2}[where]
    half = max(1, min(MIDDLE_HALF_MS, span_ms // 6))  # a tiny span keeps "middle" inside the range
    mid = newest - span_ms // 2
    return [newest - 1 - int(rng.random() * TOP_WINDOW_MS) if j < top else mid - half + int(rng.random() * 2 * half)
            for j in range(count)]


class LateEvents:
    """Released late events, sorted (ts DESC, id DESC), placed among the base events.

    `base_pos[i]` is how many base events come before late event i; its position in the merged
    order (base and late, grown events not counted) is `base_pos[i] + i`.
    """

    def __init__(self, recs: list[tuple], keys: list[tuple[int, str]], base_pos: list[int],
                 ordinals: list[int], sessions: list[int]) -> None:
        self.recs = recs
        self.base_pos = base_pos
        self.merged = [b + i for i, b in enumerate(base_pos)]
        self._asc = keys[::-1]
        self.rank = {j: i for i, j in enumerate(ordinals)}  # late ordinal -> sorted index
        self.by_session: dict[int, list[int]] = {}
        for i, si in enumerate(sessions):
            self.by_session.setdefault(si, []).append(i)

    def __len__(self) -> int:
        return len(self.recs)

    def at_or_above(self, key: tuple[int, str]) -> int:
        """How many late events sort at or before `key` = (ts, id) in (ts DESC, id DESC) order."""
        return len(self._asc) - bisect.bisect_left(self._asc, key)

    def merged_of_base(self, pb: int) -> int:
        """Merged position of the base event at base position `pb`."""
        return pb + bisect.bisect_right(self.base_pos, pb)

    def merged_records(self, q0: int, q1: int, base_records) -> list[tuple]:
        """Records of merged positions [q0, q1) (already clipped); `base_records(b0, b1)` reads base."""
        merged, recs = self.merged, self.recs
        j = bisect.bisect_left(merged, q0)  # late events before q0
        b, q = q0 - j, q0
        out: list[tuple] = []
        while q < q1:
            nxt = merged[j] if j < len(merged) else q1
            if q == nxt:
                out.append(recs[j])
                j += 1
                q += 1
                continue
            take = min(q1, nxt) - q
            out += base_records(b, b + take)
            b += take
            q += take
        return out
