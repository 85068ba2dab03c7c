"""One rate limiter shared by every fetcher thread: the server's fixed window, plus 429 pauses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Reset counts whole seconds, rounded either way: rounded down it hides up to 1 s of window, and a request
# landing early is a 429 that extends the lockout (1 s of a 60 s window costs under 2 % of throughput).
RESET_MARGIN_S = 1.0  # s, added to the end of every window the server announces
# One request tries the next window this soon after an announced end while the rest keep the margin: if it
# opens the window, the server rounds Reset up and every later end takes this margin instead.
PROBE_MARGIN_S = 0.2  # s; covers the request's way to the server, which the send-anchored ends leave out
# As an epoch 1e9 s is 2001; as a window it is 31 years: no Reset value is ambiguous.
EPOCH_THRESHOLD_S = 1e9  # s
MAX_SENDS_KEPT = 1_000  # send times of one window kept, for `cap_used`; far above any window's Limit
SLEEP_SLICE_S = 0.5  # s; longest single sleep, so a set `stop` is noticed within half a second


class RateLimiter:
    """The windows one API bucket announces in X-RateLimit-*, and the 429 pauses that stop every chain
    (the rules: docs/scheduling.md, "Windows"). Tokens are taken at `acquire`: requests in flight count."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        reset_margin: float = RESET_MARGIN_S,
        probe_margin: float | None = PROBE_MARGIN_S,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._margin = reset_margin
        self._safe_margin = reset_margin
        self._probe_margin = probe_margin  # None: never again (a probe came early), or never asked
        self._probe_window: int | None = None  # the window a probe went into early, until it is answered
        self._probe_until = 0.0  # the end with the full margin: then the rest go without the probe's answer
        self._lock = threading.Lock()
        self._engaged = False  # rate-limit headers seen: until then nothing is restricted
        self._limit = 0  # requests per window
        self._tokens = 0
        self._window = 0  # counts windows, to recognise responses to requests sent in an older one
        self._window_end: float | None = None  # monotonic s; None: the next request opens a window
        self._window_end_guessed = False  # the end was estimated at opening, not announced yet
        self._trust_guess = True  # send-anchored window ends are trusted until a 429 says otherwise
        self._window_s = 0.0  # longest Reset seen: the estimate of a window's length
        self._paused_until = float("-inf")
        self._waited_s = 0.0
        self._sent_in = threading.local()  # .window: the window this thread's last token came from
        self._sends: list[float] = []  # when this window's tokens were taken
        self._cap_pending: tuple[int, float | None] | None = None  # a `cap_used` that came before our first answer

    def spare_tokens(self) -> int:
        """Requests the current announced window still allows (0 when none is open or none is known)."""
        with self._lock:
            now = self._clock()
            self._end_probe_wait(now)
            if not self._engaged or self._window_end is None or now >= self._window_end:
                return 0
            return max(0, self._tokens)

    def window_left_s(self) -> float | None:
        """Seconds until the open window ends, our margin included (None: none open or known)."""
        with self._lock:
            if not self._engaged or self._window_end is None:
                return None
            return max(0.0, self._window_end - self._clock())

    def rate_per_s(self) -> float | None:
        """Requests per second the announced windows allow (None until a limit with its window is known)."""
        with self._lock:
            if not self._engaged or not self._limit or self._window_s <= 0:
                return None
            return self._limit / (self._window_s + self._margin)

    @property
    def waited_seconds(self) -> float:
        """Total seconds all threads have spent blocked in `acquire` (for progress lines)."""
        with self._lock:
            return self._waited_s

    def acquire(self, stop: threading.Event | None = None) -> float:
        """Block until one request may be sent; return the seconds waited.

        Returns early, without a token and raising nothing, once `stop` is set: the caller checks `stop`.
        A 429 pause is waited out in full, however often the sleep wakes.
        """
        waited = 0.0
        while stop is None or not stop.is_set():
            with self._lock:
                wait = self._take(self._clock())
            if wait <= 0:
                break
            before = self._clock()
            self._sleep(min(wait, SLEEP_SLICE_S))
            slept = self._clock() - before
            waited += slept
            with self._lock:
                self._waited_s += slept
        return waited

    def observe(self, limit: int | None, remaining: int | None, reset: float | None) -> None:
        """Keep in step with X-RateLimit-Limit/-Remaining/-Reset of an answer (None: header absent; `reset`
        seconds left or an epoch). Call it from the thread that acquired for the request: that is how an
        answer to a request sent in a window that has since rolled is recognised (it must not drain the new)."""
        with self._lock:
            if remaining is None or reset is None:
                if limit is not None and limit > 0:
                    self._limit = limit
                return
            if reset > EPOCH_THRESHOLD_S:
                reset -= self._wall()
            reset, remaining = max(0.0, reset), max(0, remaining)
            # without a Limit header the largest allowance seen is the best guess at it
            self._limit = limit if limit is not None and limit > 0 else max(self._limit, remaining, 1)
            self._window_s = max(self._window_s, reset)
            end = self._clock() + reset + self._margin
            sent_at = getattr(self._sent_in, "at", None)
            if self._trust_guess and sent_at is not None:
                # Anchored at the send time instead: right when the server counts Reset from the
                # request's arrival, which a slow page (3.5 s on the live API) makes far from its answer.
                end = min(end, sent_at + reset + self._margin)
            if not self._engaged:
                # requests in flight that are not answered yet will lower this as their answers arrive
                self._engaged = True
                self._tokens, self._window_end = remaining, end
                if self._cap_pending is not None:
                    self._cap(*self._cap_pending)
                return
            if getattr(self._sent_in, "window", self._window) < self._window:
                return  # sent in a window that has since rolled: its numbers are about that window
            if (self._probe_window == self._window and getattr(self._sent_in, "window", None) == self._window
                    and end > self._probe_until):
                # the probe's window ends past the old one (a 429's Reset would end with it): the probe opened
                # it, so the server's ends are as announced, the probe margin past them
                end += self._probe_margin - self._margin  # type: ignore[operator]
                self._margin, self._probe_window, self._tokens = self._probe_margin, None, remaining  # type: ignore[assignment]
            self._tokens = min(self._tokens, remaining)
            if self._window_end is None:
                self._window_end, self._window_end_guessed = end, False
            elif self._window_end_guessed:
                # The earlier of the guess (anchored at the opener's send) and the answer, until a 429 shows
                # guesses can be early; an answer more than a rounding (1 s) and the margin past the guess
                # proves the guessed length short (docs/scheduling.md, "Windows").
                if self._trust_guess and end - self._window_end <= 1.0 + self._margin:
                    end = min(self._window_end, end)
                self._window_end, self._window_end_guessed = end, False
            else:
                # answers arrive late and out of order, and lateness only pushes `end` later
                self._window_end = min(self._window_end, end)

    def cap_used(self, used: int, counted_at: float | None = None) -> None:
        """Another pool drawing on this bucket answered that `used` requests of the window are spent (its
        Limit - Remaining; its own Remaining is not ours), counted when its request, sent at `counted_at`,
        arrived: no more than Limit - used is left of the open window, less ours sent since, which may have
        arrived after it."""
        with self._lock:
            if not self._engaged:  # our first answer is still on its way: the cap waits for it
                self._cap_pending = (used, counted_at)
            elif self._window_end is not None and self._clock() < self._window_end:
                self._cap(used, counted_at)

    def _cap(self, used: int, counted_at: float | None) -> None:
        since = 0 if counted_at is None else sum(1 for sent in self._sends if sent >= counted_at)
        self._tokens = min(self._tokens, max(0, self._limit - used - since))

    def announced(self) -> tuple[int, float] | None:
        """(Limit, when the open window ends as announced, monotonic s, without our margin); None: none open."""
        with self._lock:
            if not self._engaged or self._window_end is None:
                return None
            return self._limit, self._window_end - self._margin

    def wait_s(self, *, probe: bool = True) -> float:
        """Seconds until a request could go (0: now); takes nothing. `probe=False`: until any number may,
        without the one request that tries a window early."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            if not self._engaged or self._tokens > 0 or self._window_end is None or now >= self._window_end:
                return 0.0
            return max(0.0, self._refill_at(probe) - now)

    def pause_for(self, seconds: float) -> None:
        """After a 429: no thread returns from `acquire` for `seconds`. Never shortens a pause."""
        with self._lock:
            self._trust_guess = False
            # An end taken at the probe margin proved early, or the probe did: the full margin from now on.
            self._margin, self._probe_margin = self._safe_margin, None
            if self._probe_window is not None:
                # the old window holds till its lockout ends, and the next request after it opens a new one
                self._probe_window, self._window_end, self._tokens = None, None, self._limit
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def hold_for(self, seconds: float) -> None:
        """No request for `seconds`: a deadline an earlier run left. Unlike a 429 it says nothing of how
        this run's window guesses line up with the server's, so they stay trusted."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _take(self, now: float) -> float:
        """Take a token if one may be sent at `now` (returns 0), else return the seconds to wait."""
        if now < self._paused_until:
            return self._paused_until - now
        if self._engaged:
            if self._window_end is not None and now >= self._window_end:
                self._window += 1
                self._tokens, self._sends = self._limit, []
                self._window_end, self._window_end_guessed = None, False
            elif self._probe_due(now):
                # one request tries the next window; the rest wait for its answer, or for the full margin
                self._window += 1
                self._probe_window, self._probe_until = self._window, self._window_end  # type: ignore[assignment]
                self._window_end, self._window_end_guessed = now + self._window_s + self._margin, True
                self._sent_in.window, self._sent_in.at, self._sends = self._window, now, [now]
                return 0.0
            self._end_probe_wait(now)
            if self._tokens <= 0:
                return self._refill_at() - now if self._window_end is not None else SLEEP_SLICE_S
            self._tokens -= 1
            if self._window_end is None:
                # this request opens the window on the server; its response will say when it ends
                self._window_end, self._window_end_guessed = now + self._window_s + self._margin, True
        self._sent_in.window = self._window
        self._sent_in.at = now
        self._sends.append(now)  # before the first answer too: a cap may come before it
        if len(self._sends) > MAX_SENDS_KEPT:  # a bucket that never announces a window
            del self._sends[: MAX_SENDS_KEPT // 2]
        return 0.0

    def _end_probe_wait(self, now: float) -> None:
        """A probe not answered by the end with the full margin holds nothing back: the window is open anyway
        (a page takes seconds to answer; the fan-out must see the window's requests from then on)."""
        if self._probe_window is not None and self._probe_window == self._window and now >= self._probe_until:
            self._probe_window, self._tokens = None, self._limit - 1

    def _probe_due(self, now: float) -> bool:
        """A spent window whose announced end passed by the probe margin, while the full margin still holds
        the rest back and the server's rounding is not known yet."""
        return (self._probe_margin is not None and self._probe_margin < self._margin and self._tokens <= 0
                and self._probe_window is None and self._window_end is not None
                and now >= self._window_end - self._margin + self._probe_margin)

    def _refill_at(self, probe: bool = True) -> float:
        """When the spent window gives tokens again: at its end with the full margin, or at the probe margin
        for the one request that tries it early (`probe`); a probe in flight may get its answer sooner."""
        if self._probe_window == self._window:
            return self._probe_until
        assert self._window_end is not None
        if probe and self._probe_margin is not None and self._probe_margin < self._margin:
            return self._window_end - self._margin + self._probe_margin
        return self._window_end
