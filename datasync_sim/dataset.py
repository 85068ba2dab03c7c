"""The event dataset, generated on demand from positions — never materialised.

Layout. Position 0 is the newest event; order is (timestamp DESC, id DESC). The N base events are
cut into blocks of `BLOCK` positions; block k covers the time slice
`(newest - (k+1)*block_span, newest - k*block_span]`, so the block holding any instant is computed
in O(1) and a cursor is positioned by scanning one block. Inside a block the offsets are seeded
random, with tie groups of 2–4 events sharing one millisecond (~10% of events), then sorted by
(ts DESC, id DESC). Ids come from a keyed bijection of the key `k*BLOCK + j` (ids.py), so an id maps
back to its block in O(1). Events added later (`grow`, and `new_events` on release) sit above the
newest base event, one `gap` apart; their keys are N, N+1, … so every id stays unique. Late events
(late.py) are held back until `release`, then merged among the base events at their timestamps.

Sessions: base slots are cut into windows of 1000 events holding 20 sessions (sizes in pairs
s, 100-s with s in 35..65), shuffled inside the window; 3M events give exactly 60,000 sessions of
3,000 users. A record is the tuple described by the R_* indexes below; blocks are LRU-cached.
"""

from __future__ import annotations

import functools
import random
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass

import orjson

from .config import SimConfig
from .ids import UuidBatch, UuidMixer
from .late import LATE_KEY0, LateEvents, late_timestamps
from .timefmt import iso_json

BLOCK = 64  # positions per block; one block is generated at a time (~0.3 ms)
BLOCK_CACHE = 1536  # blocks; ~98K events, ~50 MB: 8 parallel 5000-event readers and most of their read-ahead
WINDOW = 1000  # slots per session window
SESSIONS_PER_WINDOW = 20
USERS = 3000
DAY_MS = 86_400_000

TYPES = ("page_view", "click", "api_call", "form_submit", "scroll", "purchase", "error", "video_play")
_DEVICES = ("desktop",) * 11 + ("mobile",) * 7 + ("tablet",) * 2
_BROWSERS = ("Chrome",) * 12 + ("Safari",) * 4 + ("Firefox",) * 2 + ("Edge",) * 2
_PAGES = ("/home", "/pricing", "/products", "/checkout", "/about", "/blog", "/docs", "/signup",
          "/login", "/dashboard", "/settings", "/cart", "/search", "/account")
_ELEMENTS = ("button#cta", "a.nav-link", "button.add-to-cart", "img.hero", "a.footer", "input#search")
_ENDPOINTS = ("/api/users", "/api/orders", "/api/products", "/api/cart", "/api/search")
_FORMS = ("signup", "login", "contact", "newsletter", "checkout")
_ERRORS = ("TypeError", "NetworkError", "TimeoutError", "ReferenceError")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# record fields: a record is a tuple, for speed. An event's JSON is HEAD + timestamp value + TAIL.
R_TS, R_ID, R_HEAD, R_TAIL, R_TYPE, R_SESSION, R_SERVED_ID = range(7)

MIDDLES = 65_536  # distinct (type, name, properties) pieces; an event draws one with 16 random bits
PERMUTATIONS = 32  # fixed shuffles of a session window, one drawn per window


def _property(kind: int, rng: random.Random) -> dict:
    page = rng.choice(_PAGES)
    return [
        {"page": page},
        {"element": rng.choice(_ELEMENTS), "page": page},
        {"endpoint": rng.choice(_ENDPOINTS), "method": rng.choice(("GET", "GET", "POST"))},
        {"formId": rng.choice(_FORMS)},
        {"depth": rng.choice((25, 50, 75, 100))},
        {"amount": rng.randrange(500, 50_000) / 100, "currency": "USD"},
        {"message": rng.choice(_ERRORS), "page": page},
        {"videoId": f"vid_{rng.randrange(10_000):04d}"},
    ][kind]


@functools.cache
def _middles() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """`"type":…,"name":…,"properties":…,"timestamp":` pieces and their type index, exactly in the
    contract's proportions (35/25/10/10/5/5/5/5 %). Built once per process (0.5–1 s): by `build_tables`
    before a server listens, else on first use."""
    rng = random.Random(20260127)
    kinds = [k for k, pct in enumerate((35, 25, 10, 10, 5, 5, 5, 5)) for _ in range(MIDDLES * pct // 100)]
    kinds += [0] * (MIDDLES - len(kinds))
    rng.shuffle(kinds)
    out = []
    for kind in kinds:
        name = "".join(rng.choice(_B36) for _ in range(6))
        props = orjson.dumps(_property(kind, rng)).decode()
        out.append(f'"type":"{TYPES[kind]}","name":"event_{name}","properties":{props},"timestamp":')
    return tuple(out), tuple(kinds)


@functools.cache
def _permutations() -> tuple[tuple[int, ...], ...]:
    out = []
    for i in range(PERMUTATIONS):
        perm = list(range(WINDOW))
        random.Random(i).shuffle(perm)
        out.append(tuple(perm))
    return tuple(out)


def build_tables() -> None:
    """Build the process-wide tables every page draws on, so no request pays for them."""
    _middles()
    _permutations()


def event_ms(rec: tuple) -> bytes:
    """The event's JSON with its timestamp as epoch ms."""
    return rec[R_HEAD] + b"%d" % rec[R_TS] + rec[R_TAIL]


def event_iso(rec: tuple) -> bytes:
    """The event's JSON with its timestamp as an ISO-8601 string."""
    return rec[R_HEAD] + iso_json(rec[R_TS]) + rec[R_TAIL]


@dataclass(frozen=True)
class SessionInfo:
    index: int
    id: str
    user_id: str
    device: str
    browser: str
    pair: str  # `"sessionId":"…","userId":"…",`
    tail: bytes  # `,"session":{"id":…,"deviceType":…,"browser":…}}`: the end of an event


class Dataset:
    """Deterministic events by position; thread-safe; grows at the top with `grow`; `release` shows
    the held-back events (late and new)."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.n = cfg.events
        self.newest = cfg.newest_ts
        span_ms = int(cfg.span_days * DAY_MS)
        self.block_span = max(1, span_ms * BLOCK // max(self.n, 1))
        self.gap = max(1, self.block_span // BLOCK)  # spacing of grown events, ms
        self.nblocks = -(-self.n // BLOCK)
        self.base_windows = -(-self.n // WINDOW)
        self._seed = cfg.seed
        self._ids = UuidMixer(cfg.seed, "event")
        self._sids = UuidMixer(cfg.seed, "session")
        self._uids = UuidMixer(cfg.seed, "user")
        self._batch = UuidBatch(self._ids, BLOCK)
        self._lock = threading.Lock()
        self._state: tuple[int, LateEvents | None] = (0, None)  # (grown, released late events)
        self._released = False
        self.damaged = self._damaged_slots()
        self.base_block = BlockCache(self._make_base_block, BLOCK_CACHE)
        self.grown_block = functools.lru_cache(maxsize=64)(self._make_grown_block)
        self.window = functools.lru_cache(maxsize=256)(self._make_window)

    # ---- growth -------------------------------------------------------------------------------
    def grow(self, count: int) -> int:
        """Add `count` events newer than the current newest; returns the new total."""
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            grown, late = self._state
            self._state = (grown + count, late)
        return View(self, grown + count, late).total

    def release(self) -> tuple[int, int]:
        """Show every held-back event: late ones at their old timestamps, `new_events` above the
        newest. Returns (late, new) released by this call; (0, 0) once released."""
        if self._released:
            return 0, 0
        late = self._make_late() if self.cfg.late_events else None  # reads base blocks: no lock held
        with self._lock:
            if self._released:
                return 0, 0
            self._released = True
            grown, _ = self._state
            self._state = (grown + self.cfg.new_events, late)
        return self.cfg.late_events, self.cfg.new_events

    def snapshot(self) -> View:
        """A consistent view for one request (growth or release during the request is not seen)."""
        return View(self, *self._state)

    # ---- ids ----------------------------------------------------------------------------------
    def key_of_id(self, eid: str) -> int | None:
        """The key (ordinal) of id `eid`, or None if `eid` is not of this dataset's form."""
        return self._ids.ordinal(eid)

    def uuid_of_key(self, key: int) -> str:
        return self._ids.uuid(key)

    def session_index(self, sid: str) -> int | None:
        return self._sids.ordinal(sid)

    def damaged_ids(self) -> set[str]:
        """The true ids of the damaged slots (they are never served intact)."""
        out = set()
        for slot in self.damaged:
            out.add(self.base_block(slot // BLOCK)[slot % BLOCK][R_ID])
        return out

    # ---- generation ---------------------------------------------------------------------------
    def _damaged_slots(self) -> frozenset[int]:
        count = round(self.cfg.p_damaged_id * self.n)
        if count == 0:
            return frozenset()
        return frozenset(random.Random(f"{self._seed}:damaged").sample(range(self.n), count))

    def _make_window(self, w: int) -> tuple[tuple[int, ...], tuple[SessionInfo, ...]]:
        """Session window `w`: the local session of each of its slots, and its 20 sessions."""
        rng = random.Random(f"{self._seed}:w:{w}")
        labels: list[int] = []
        for pair in range(SESSIONS_PER_WINDOW // 2):
            s = rng.randint(35, 65)
            labels += [2 * pair] * s + [2 * pair + 1] * (100 - s)
        perm = _permutations()[rng.randrange(PERMUTATIONS)]
        sessions = []
        for local in range(SESSIONS_PER_WINDOW):
            si = w * SESSIONS_PER_WINDOW + local
            sid = self._sids.uuid(si)
            uid = self._uids.uuid(rng.randrange(USERS))
            device = rng.choice(_DEVICES)
            browser = rng.choice(_BROWSERS)
            sessions.append(SessionInfo(
                si, sid, uid, device, browser, f'"sessionId":"{sid}","userId":"{uid}",',
                f',"session":{{"id":"{sid}","deviceType":"{device}","browser":"{browser}"}}}}'.encode()))
        return tuple([labels[i] for i in perm]), tuple(sessions)

    def session(self, si: int) -> SessionInfo:
        w, local = divmod(si, SESSIONS_PER_WINDOW)
        return self.window(w)[1][local]

    def _records(self, rng: random.Random, pairs: list[tuple[int, str]], first_slot: int,
                 first_window: int, damaged: frozenset[int]) -> tuple[tuple, ...]:
        """Records for the (ts, id) `pairs` filling slots first_slot, first_slot+1, … in order."""
        middles, kinds = _middles()
        draws = array("H", rng.getrandbits(16 * len(pairs)).to_bytes(2 * len(pairs), "little"))
        out = []
        w, local = divmod(first_slot, WINDOW)
        perm, sessions = self.window(first_window + w)
        for r, (ts, eid) in enumerate(pairs):
            if local == WINDOW:
                w, local = w + 1, 0
                perm, sessions = self.window(first_window + w)
            sess = sessions[perm[local]]
            m = draws[r]
            served = _damage(eid, first_slot + r) if damaged and first_slot + r in damaged else eid
            out.append((ts, eid, f'{{"id":"{served}",{sess.pair}{middles[m]}'.encode(), sess.tail,
                        kinds[m], sess.index, served))
            local += 1
        return tuple(out)

    def _make_base_block(self, k: int) -> tuple[tuple, ...]:
        first = k * BLOCK
        count = min(BLOCK, self.n - first)
        span = max(1, self.block_span * count // BLOCK)
        rng = random.Random(self._seed * 1_000_003 + k)
        rnd = rng.random
        offsets = sorted([int(rnd() * span) for _ in range(count)])
        if k == 0:
            offsets[0] = 0  # the newest event is exactly at `newest`
        rate = self.cfg.tie_group_rate
        j = 0
        while j < count:
            if rnd() < rate:
                size = 2 + int(rnd() * 3)
                for t in range(j + 1, min(j + size, count)):
                    offsets[t] = offsets[j]
                j += size
            else:
                j += 1
        top = self.newest - k * self.block_span
        pairs = sorted(zip([top - o for o in offsets], self._batch.uuids(first, count), strict=True),
                       reverse=True)
        return self._records(rng, pairs, first, 0, self.damaged)

    def _make_grown_block(self, k: int) -> tuple[tuple, ...]:
        rng = random.Random(-(self._seed * 1_000_003 + k) - 1)
        first = k * BLOCK
        ids = self._batch.uuids(self.n + first, BLOCK)
        pairs = [(self.newest + (first + j + 1) * self.gap, ids[j]) for j in range(BLOCK)]
        return self._records(rng, pairs, first, self.base_windows, frozenset())

    def _make_late(self) -> LateEvents:
        """The `late_events` events (ordinals LATE_KEY0 + j), each in the session of the base event
        that follows it, so sessions stay local in time (and the session windows cached)."""
        cfg, count = self.cfg, self.cfg.late_events
        rng = random.Random(f"{self._seed}:late")
        stamps = late_timestamps(count, cfg.late_where, self.newest, int(cfg.span_days * DAY_MS), rng)
        draws = [rng.getrandbits(16) for _ in range(count)]
        ids = [eid for first in range(0, count, BLOCK)
               for eid in self._batch.uuids(LATE_KEY0 + first, min(BLOCK, count - first))]
        order = sorted(range(count), key=lambda j: (stamps[j], ids[j]), reverse=True)
        middles, kinds = _middles()
        recs, base_pos = [], []
        for j in order:
            pb = self.base_seek(stamps[j], ids[j])
            slot = min(pb, self.n - 1)
            perm, sessions = self.window(slot // WINDOW)
            sess = sessions[perm[slot % WINDOW]]
            m = draws[j]
            recs.append((stamps[j], ids[j], f'{{"id":"{ids[j]}",{sess.pair}{middles[m]}'.encode(), sess.tail,
                         kinds[m], sess.index, ids[j]))
            base_pos.append(pb)
        return LateEvents(recs, [(r[R_TS], r[R_ID]) for r in recs], base_pos, order, [r[R_SESSION] for r in recs])

    # ---- base positions -----------------------------------------------------------------------
    def base_records(self, start: int, stop: int) -> list[tuple]:
        """Records of base positions [start, stop) (0 <= start <= stop <= n)."""
        out: list[tuple] = []
        b = start
        while b < stop:
            k, r = divmod(b, BLOCK)
            take = min(BLOCK - r, stop - b)
            out.extend(self.base_block(k)[r:r + take])
            b += take
        return out

    def base_seek(self, ts: int, eid: str) -> int:
        """How many base events come before (ts, eid) in (ts DESC, id DESC) order: O(BLOCK)."""
        k = (self.newest - ts) // self.block_span
        if k < 0:
            return 0
        if k >= self.nblocks:
            return self.n
        key = (ts, eid)
        for r, rec in enumerate(self.base_block(k)):
            if (rec[R_TS], rec[R_ID]) < key:
                return k * BLOCK + r
        return min(self.n, (k + 1) * BLOCK)

    def base_position(self, key: int) -> int:
        """Base position of the base event with key `key` (< n)."""
        k = key // BLOCK
        eid = self.uuid_of_key(key)
        for r, rec in enumerate(self.base_block(k)):
            if rec[R_ID] == eid:
                return k * BLOCK + r
        raise AssertionError("unreachable: every key of a block is in it")


class BlockCache:
    """LRU cache of blocks that builds each block once even when several threads want it at once
    (the read-ahead thread and a request often do): latecomers wait for the first builder."""

    def __init__(self, build, size: int) -> None:
        self._build = build
        self._size = size
        self._ready: OrderedDict[int, tuple] = OrderedDict()
        self._building: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def __call__(self, k: int) -> tuple:
        while True:
            with self._lock:
                block = self._ready.get(k)
                if block is not None:
                    self._ready.move_to_end(k)
                    return block
                pending = self._building.get(k)
                if pending is None:
                    self._building[k] = threading.Event()
                    break
            pending.wait()
        block = None
        try:
            block = self._build(k)
        finally:
            with self._lock:
                done = self._building.pop(k)
                if block is not None:
                    self._ready[k] = block
                    if len(self._ready) > self._size:
                        self._ready.popitem(last=False)
            done.set()
        return block


def _damage(eid: str, slot: int) -> str:
    if slot % 2:
        return eid[:-6]  # truncated
    return eid[:2] + "zq" + eid[4:]  # not hex


class View:
    """The dataset at one state: positions 0..total-1, grown events first, then the base events
    with the released late events merged among them."""

    def __init__(self, ds: Dataset, grown: int, late: LateEvents | None = None) -> None:
        self.ds = ds
        self.g = grown
        self.late = late
        self.total = ds.n + grown + (len(late) if late is not None else 0)

    def records(self, start: int, stop: int) -> list[tuple]:
        """Records of positions [start, stop), clipped to the dataset."""
        ds, g = self.ds, self.g
        start, stop = max(0, start), min(stop, self.total)
        out: list[tuple] = []
        p = start
        while p < stop and p < g:
            j = g - 1 - p
            out.append(ds.grown_block(j // BLOCK)[j % BLOCK])
            p += 1
        if p < stop:
            if self.late is None:
                out += ds.base_records(p - g, stop - g)
            else:
                out += self.late.merged_records(p - g, stop - g, ds.base_records)
        return out

    def record(self, p: int) -> tuple:
        return self.records(p, p + 1)[0]

    def seek(self, ts: int, eid: str) -> int:
        """First position strictly after (ts, eid) in (ts DESC, id DESC) order; total if none.

        Works for any (ts, eid), whether or not an event has it: O(log grown + BLOCK + log late).
        """
        ds, g = self.ds, self.g
        key = (ts, eid)
        if g and ts > ds.newest:
            # grown region: position p holds ts newest + (g-p)*gap, strictly decreasing
            lo, hi = 0, g
            while lo < hi:
                mid = (lo + hi) // 2
                rec = self.record(mid)
                if (rec[R_TS], rec[R_ID]) < key:
                    hi = mid
                else:
                    lo = mid + 1
            if lo < g:
                return lo
        late = self.late.at_or_above(key) if self.late is not None else 0
        return g + ds.base_seek(ts, eid) + late

    def seek_before(self, ts: int) -> int:
        """First position with timestamp < ts."""
        return self.seek(ts, "")

    def position_of_key(self, key: int) -> int | None:
        """Current position of the event with key `key`, or None (unknown, not grown yet, held back)."""
        ds, late = self.ds, self.late
        if key < ds.n:
            pb = ds.base_position(key)
            return self.g + (late.merged_of_base(pb) if late is not None else pb)
        if key >= LATE_KEY0:
            i = late.rank.get(key - LATE_KEY0) if late is not None else None
            return None if i is None else self.g + late.merged[i]
        j = key - ds.n
        return self.g - 1 - j if j < self.g else None

    def session_positions(self, si: int) -> list[int]:
        """Positions of session `si`'s events, ascending (newest first)."""
        ds, g, late = self.ds, self.g, self.late
        w, local = divmod(si, SESSIONS_PER_WINDOW)
        perm = ds.window(w)[0]
        if w < ds.base_windows:
            base = w * WINDOW
            pbs = [base + i for i, s in enumerate(perm) if s == local and base + i < ds.n]
            if late is None:
                out = [g + pb for pb in pbs]
            else:
                out = [g + late.merged_of_base(pb) for pb in pbs]
                out += [g + late.merged[i] for i in late.by_session.get(si, ())]
        else:
            base = (w - ds.base_windows) * WINDOW
            out = [g - 1 - (base + i) for i, s in enumerate(perm) if s == local and base + i < g]
        out.sort()
        return out

    def _windows(self) -> list[tuple[int, int]]:
        """(window index, slots present) of every non-empty session window."""
        ds = self.ds
        out = []
        for first_window, slots in ((0, ds.n), (ds.base_windows, self.g)):
            for i in range(-(-slots // WINDOW)):
                out.append((first_window + i, min(WINDOW, slots - i * WINDOW)))
        return out

    def session_indexes(self) -> list[int]:
        """Indexes of all sessions holding events: base windows (newest first), then grown ones."""
        out: list[int] = []
        for w, present in self._windows():
            locals_ = range(SESSIONS_PER_WINDOW) if present == WINDOW else sorted(
                set(self.ds.window(w)[0][:present]))
            out += [w * SESSIONS_PER_WINDOW + s for s in locals_]
        return out
