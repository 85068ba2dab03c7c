"""The plan of a pass: partitions [lo, hi), splitting the widest for an idle chain, claiming a finish.

No threads, no HTTP, no database: each test builds a small plan by hand and reads as one rule of the
protocol the scheduler and the walkers follow.
"""

from __future__ import annotations

import copy

import pytest

from ingest.plan.partitions import (
    MIN_PIECE_PAGES,
    MIN_SPLIT_PAGES,
    PAGE_MARGIN,
    Partition,
    Plan,
    min_split_ms,
    page_partitions,
)

MIN_SPLIT = 10_000  # ms; the narrowest range worth splitting in these plans (a page is 5,000 ms of range)


def bounds(plan: Plan) -> list[tuple[int, int | None, int | None, bool]]:
    """(id, lo, hi, done) of every partition, in id order: the whole shape of a plan."""
    return [(p.partition_id, p.lo_ms, p.hi_ms, p.done) for _, p in sorted(plan.partitions.items())]


def two_running() -> Plan:
    """Partition 1 [0, 100,000) not started; partition 2 [100,000, open) walked down to 150,000."""
    return Plan([Partition(1, 0, 100_000), Partition(2, 100_000, None, pos_ms=150_000)], oldest_ms=0,
                min_split_ms=MIN_SPLIT)


# ---- page_partitions, min_split_ms ------------------------------------------------------------------------

NEWEST = 1_769_541_612_369  # ms


def shape(parts: list[Partition]) -> list[tuple[int, int | None, int | None]]:
    return [(p.partition_id, p.lo_ms, p.hi_ms) for p in parts]


def test_partitions_hold_whole_pages_less_the_margin_and_the_oldest_the_rest() -> None:
    # 300,000 events 1 ms apart, pages of 5,000: 7.5 pages a chain evenly, so 8 pages less the margin
    # each (a last page nearly full), and the oldest partition what is left.
    width = int(8 * (1 - PAGE_MARGIN) * 5_000)
    bounds = [NEWEST + 1 - i * width for i in range(1, 8)]
    assert shape(page_partitions(NEWEST, 1.0, 300_000, 5_000, 8)) == [
        (i + 1, lo, hi) for i, (lo, hi) in enumerate(zip([*bounds, None], [None, *bounds], strict=True))]


@pytest.mark.parametrize(("total", "count"), [(300_000, 1), (300_000, 2), (300_000, 3), (3_000_000, 7),
                                              (3_000_000, 16), (45_000, 8)])
def test_partitions_cover_everything_without_gap_or_overlap(total: int, count: int) -> None:
    parts = page_partitions(NEWEST, 0.86, total, 5_000, count)
    assert 1 <= len(parts) <= count
    assert (parts[0].hi_ms, parts[-1].lo_ms) == (None, None)  # events newer or older than the probe too
    assert [p.lo_ms for p in parts[:-1]] == [p.hi_ms for p in parts[1:]]  # each one ends where the next begins
    widths = [p.hi_ms - p.lo_ms for p in parts[1:-1] if p.hi_ms is not None and p.lo_ms is not None]
    assert len(set(widths)) <= 1
    oldest = NEWEST - total * 0.86
    assert all(lo > oldest for lo in (p.lo_ms for p in parts[:-1]) if lo is not None)  # the oldest holds some


def test_a_few_pages_are_cut_into_fewer_partitions_than_chains() -> None:
    # 9 pages for 8 chains: a partition of 1 page each would end 8 chains in a partial page; 2 pages each do not
    assert len(page_partitions(NEWEST, 1.0, 45_000, 5_000, 8)) == 5
    assert shape(page_partitions(NEWEST, 1.0, 5_000, 5_000, 8)) == [(1, None, None)]  # one page: one request


def test_a_count_below_one_gives_one_unbounded_partition() -> None:
    assert shape(page_partitions(NEWEST, 1.0, 300_000, 5_000, 0)) == [(1, None, None)]


def test_a_range_narrower_than_the_count_still_gives_distinct_bounds() -> None:
    assert [(p.lo_ms, p.hi_ms) for p in page_partitions(5, 1e-6, 300_000, 5_000, 3)] == [
        (5, None), (4, 5), (None, 4)]


def test_min_split_ms_is_the_range_holding_min_split_pages_at_average_density() -> None:
    # 100,000 events over 1,000,000 ms: 10 ms per event, a 1,000-event page is 10,000 ms
    assert min_split_ms(1_000_000, 0, 100_000, 1_000) == MIN_SPLIT_PAGES * 10_000


@pytest.mark.parametrize(("newest", "oldest", "total"), [(None, 0, 10), (1_000, None, 10), (1_000, 0, None),
                                                           (1_000, 0, 0)])
def test_min_split_ms_is_0_no_splits_while_anything_is_unknown(newest, oldest, total) -> None:
    assert min_split_ms(newest, oldest, total, 1_000) == 0


# ---- remaining range ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("partition", "oldest", "left"), [
    (Partition(1, 0, 100_000), None, 100_000),  # not started: its whole range
    (Partition(1, 0, 100_000, pos_ms=30_000), None, 30_000),  # walked down to 30,000
    (Partition(1, 0, None), None, 0),  # the top, not started: its top is unknown
    (Partition(1, 0, None, pos_ms=40_000), None, 40_000),
    (Partition(1, None, 100_000), 20_000, 80_000),  # open bottom: down to the estimated oldest event
    (Partition(1, None, 100_000), None, 0),  # ... unknown
    (Partition(1, 50_000, 100_000, pos_ms=40_000), None, 0),  # walked past its bound
    (Partition(1, 0, 100_000, done=True), None, 0),
])
def test_remaining_ms_is_the_range_still_to_fetch(partition: Partition, oldest: int | None, left: int) -> None:
    assert partition.remaining_ms(oldest) == left


def test_remaining_pages_counts_the_running_partitions_in_pages() -> None:
    plan = two_running()  # a page is MIN_SPLIT / MIN_SPLIT_PAGES = 5,000 ms of range
    assert (plan.remaining_pages({1, 2}), plan.remaining_pages({2}), plan.remaining_pages(set())) == (30.0, 10.0, 0.0)


def test_remaining_pages_is_unknown_while_the_density_is() -> None:
    assert Plan([Partition(1, 0, 100_000)], oldest_ms=0).remaining_pages({1}) is None


# ---- propose_split, apply_split -------------------------------------------------------------------------


def whole(pages: int) -> int:
    """The ms of range a running chain keeps in a split: `pages` whole pages less the margin (a page is 5,000 ms)."""
    return int(pages * (1 - PAGE_MARGIN) * 5_000)


def test_propose_split_halves_the_running_partition_with_the_most_range_left() -> None:
    plan = two_running()  # 1 has 100,000 ms (20 pages) left, 2 has 50,000
    assert plan.propose_split({1, 2}) == (1, 100_000 - whole(10), Partition(3, 0, 100_000 - whole(10)))


def test_the_running_chain_keeps_whole_pages_so_that_only_the_new_piece_ends_in_a_partial_page() -> None:
    # 3.8 pages left (a partition planned to hold whole pages, one walked): halves would end both pieces in a
    # partial page, 2 + 2 requests, where the running chain keeping 2 pages less the margin leaves the thief
    # under 2: 2 + 2 requests for 4 before the split
    plan = Plan([Partition(1, 0, 19_000)], oldest_ms=0, min_split_ms=MIN_SPLIT)
    assert plan.propose_split({1}) == (1, 19_000 - whole(2), Partition(2, 0, 19_000 - whole(2)))


def test_propose_split_measures_from_where_the_walker_stands_not_from_the_upper_bound() -> None:
    plan = Plan([Partition(1, 0, 1_000_000, pos_ms=60_000), Partition(2, 1_000_000, 1_100_000)], oldest_ms=0,
                min_split_ms=MIN_SPLIT)
    assert plan.propose_split({1, 2}) == (2, 1_100_000 - whole(10), Partition(3, 1_000_000, 1_100_000 - whole(10)))


def test_propose_split_considers_only_running_partitions_that_are_not_done() -> None:
    plan = two_running()
    split_2 = (2, 150_000 - whole(5), Partition(3, 100_000, 150_000 - whole(5)))
    assert plan.propose_split({2}) == split_2
    assert plan.claim_done(1, plan.lower_bound(1))
    assert plan.propose_split({1, 2}) == split_2


def test_the_new_piece_takes_the_lower_share_of_the_range_left() -> None:
    plan = two_running()
    assert plan.propose_split({1, 2}, share_of=lambda pid: 0.3) == (1, 100_000 - whole(14),
                                                                    Partition(3, 0, 100_000 - whole(14)))


def test_a_slow_thief_still_takes_the_smallest_piece_worth_a_split() -> None:
    plan = two_running()
    # 20 pages: the running chain keeps 19 less the margin, the thief the rest, over MIN_PIECE_PAGES
    assert plan.propose_split({1, 2}, share_of=lambda pid: 0.01) == (1, 100_000 - whole(19),
                                                                     Partition(3, 0, 100_000 - whole(19)))
    assert (100_000 - whole(19)) / 5_000 > MIN_PIECE_PAGES


def test_no_split_for_a_thief_whose_share_is_nothing() -> None:
    assert two_running().propose_split({1, 2}, share_of=lambda pid: 0.0) is None


def test_the_running_one_keeps_a_page_and_the_new_one_at_least_min_piece_pages_else_no_split() -> None:
    plan = two_running()
    assert plan.propose_split({1, 2}, share_of=lambda pid: 0.95) == (1, 100_000 - whole(1),
                                                                     Partition(3, 0, 100_000 - whole(1)))
    narrow = Plan([Partition(1, 0, 9_000)], oldest_ms=0, min_split_ms=MIN_SPLIT)  # 1.8 pages: 0.83 for a thief
    assert narrow.propose_split({1}) is None
    just = Plan([Partition(1, 0, 10_000)], oldest_ms=0, min_split_ms=MIN_SPLIT)  # 2 pages: 1.03 for a thief
    assert just.propose_split({1}) == (1, 10_000 - whole(1), Partition(2, 0, 10_000 - whole(1)))


def test_no_split_without_a_density_or_a_running_partition() -> None:
    unknown = Plan([Partition(1, 0, 100_000)], oldest_ms=0)  # min_split_ms 0: density unknown
    assert (unknown.propose_split({1}), two_running().propose_split(set())) == (None, None)


def test_an_open_bottom_is_split_against_the_estimated_oldest_event_and_stays_open() -> None:
    plan = Plan([Partition(1, None, 100_000)], oldest_ms=20_000, min_split_ms=MIN_SPLIT)
    assert plan.propose_split({1}) == (1, 100_000 - whole(8), Partition(2, None, 100_000 - whole(8)))
    assert Plan([Partition(1, None, 100_000)], oldest_ms=None, min_split_ms=MIN_SPLIT).propose_split({1}) is None


def test_a_cut_leaves_the_widest_its_piece_below_its_position_and_gives_the_rest_to_the_new_partition() -> None:
    plan = two_running()  # a page is 5,000 ms; 1 has 20 pages left from its top, 2 has 10 from its position
    assert plan.propose_cut({1, 2}, keep_pages=0.8, min_rest_pages=0.2) == (1, 96_000, Partition(3, 0, 96_000))
    assert plan.propose_cut({2}, keep_pages=0.8, min_rest_pages=0.2) == (2, 146_000, Partition(3, 100_000, 146_000))


def test_no_cut_when_the_rest_is_what_the_running_chain_fetches_anyway() -> None:
    plan = Plan([Partition(1, 0, 5_000)], oldest_ms=0, min_split_ms=MIN_SPLIT)  # one page: its next request
    assert plan.propose_cut({1}, keep_pages=0.8, min_rest_pages=0.2) is None
    wider = Plan([Partition(1, 0, 6_000)], oldest_ms=0, min_split_ms=MIN_SPLIT)
    assert wider.propose_cut({1}, keep_pages=0.8, min_rest_pages=0.2) == (1, 2_000, Partition(2, 0, 2_000))


def test_a_cut_of_an_open_bottom_stays_open() -> None:
    plan = Plan([Partition(1, None, 20_000)], oldest_ms=0, min_split_ms=MIN_SPLIT)
    assert plan.propose_cut({1}, keep_pages=1.6, min_rest_pages=0.4) == (1, 12_000, Partition(2, None, 12_000))


def test_no_cut_without_a_density_or_a_running_partition() -> None:
    unknown = Plan([Partition(1, 0, 100_000)], oldest_ms=0)
    assert (unknown.propose_cut({1}, 0.8, 0.2), two_running().propose_cut(set(), 0.8, 0.2)) == (None, None)


def test_propose_split_changes_nothing_until_apply_split() -> None:
    plan = two_running()
    before = copy.deepcopy(plan.partitions)
    narrowed, middle, new = plan.propose_split({1, 2})
    assert (plan.partitions, plan.lower_bound(1)) == (before, 0)
    plan.apply_split(narrowed, middle, new)
    middle = 100_000 - whole(10)
    assert bounds(plan) == [(1, middle, 100_000, False), (2, 100_000, None, False), (3, 0, middle, False)]
    assert [p.partition_id for p in plan.pending()] == [1, 2, 3]


def test_apply_split_on_a_partition_that_finished_meanwhile_still_adds_the_new_one() -> None:
    plan = two_running()
    narrowed, middle, new = plan.propose_split({1, 2})
    assert plan.claim_done(1, 0)  # its walker reached the bound before the split was committed
    plan.apply_split(narrowed, middle, new)
    # the new piece is persisted, so it runs: it fetches a covered range again and the upsert absorbs it
    assert bounds(plan) == [(1, 0, 100_000, True), (2, 100_000, None, False), (3, 0, 100_000 - whole(10), False)]


def test_advance_records_the_position_that_later_splits_measure_from() -> None:
    plan = two_running()
    plan.advance(1, "cursor-after-20000", 20_000, "some-id", "documented")
    part = plan.partitions[1]
    assert (part.cursor, part.pos_ms, part.pos_id, part.cursor_kind) == (
        "cursor-after-20000", 20_000, "some-id", "documented")
    assert plan.propose_split({1, 2}) == (2, 150_000 - whole(5), Partition(3, 100_000, 150_000 - whole(5)))


# ---- claim_done ---------------------------------------------------------------------------------------


def test_claim_finish_marks_done_when_the_bound_is_the_one_the_page_was_cut_at() -> None:
    plan = two_running()
    assert (plan.claim_done(1, 0), bounds(plan)[0]) == (True, (1, 0, 100_000, True))


def test_claim_finish_refuses_when_a_split_raised_the_bound_meanwhile() -> None:
    plan = two_running()
    plan.apply_split(*plan.propose_split({1, 2}))
    middle = 100_000 - whole(10)
    assert (plan.claim_done(1, 0), bounds(plan)[0]) == (False, (1, middle, 100_000, False))
    assert plan.claim_done(1, middle)  # cut again at the raised bound


def test_claim_finish_refuses_when_a_fallback_opened_the_bound_meanwhile() -> None:
    plan = Plan([Partition(1, 500, None), Partition(2, 0, 500)], oldest_ms=0, min_split_ms=MIN_SPLIT)
    plan.cover_with_server_cursors(2)  # the top now runs to the oldest event
    assert (plan.claim_done(1, 500), plan.claim_done(1, None)) == (False, True)


# ---- cover_with_server_cursors --------------------------------------------------------------------------


def test_a_refused_partition_extends_the_running_top_to_the_oldest_event() -> None:
    plan = Plan([Partition(1, 500, None), Partition(2, 200, 500), Partition(3, None, 200)], oldest_ms=0,
                min_split_ms=MIN_SPLIT)
    extended, created = plan.cover_with_server_cursors(2)
    assert (extended, created) == (plan.partitions[1], None)
    assert bounds(plan) == [(1, None, None, False), (2, 200, 500, True), (3, None, 200, False)]
    assert (plan.splittable, plan.propose_split({1, 3})) == (False, None)  # new partitions need built cursors


def test_a_refused_partition_after_the_top_finished_creates_a_new_unbounded_one() -> None:
    plan = Plan([Partition(1, 500, None, done=True), Partition(2, 200, 500)], oldest_ms=0, min_split_ms=MIN_SPLIT)
    extended, created = plan.cover_with_server_cursors(2)
    assert (extended, created) == (None, Partition(3, None, None))
    assert bounds(plan) == [(1, 500, None, True), (2, 200, 500, True), (3, None, None, False)]


def test_a_refused_partition_under_an_unbounded_top_needs_nothing_new() -> None:
    plan = Plan([Partition(1, None, None), Partition(2, 200, 500)], oldest_ms=0, min_split_ms=MIN_SPLIT)
    assert plan.cover_with_server_cursors(2) == (None, None)
    assert (bounds(plan), plan.splittable) == ([(1, None, None, False), (2, 200, 500, True)], False)


# ---- learn_density --------------------------------------------------------------------------------------


def test_the_top_page_teaches_the_split_width_and_the_oldest_event() -> None:
    plan = Plan([Partition(1, None, None)], oldest_ms=None)
    # 100 events 10 ms apart on a page of 100; the API counts 50,000 events
    plan.learn_density(1_000_000, 999_010, 100, 50_000, 100, at_top=True)
    assert (plan.min_split_ms, plan.oldest_ms) == (MIN_SPLIT_PAGES * 100 * 10, 1_000_000 - 50_000 * 10)


def test_a_page_below_the_top_teaches_the_split_width_only() -> None:
    plan = Plan([Partition(1, None, None)], oldest_ms=None)
    plan.learn_density(1_000_000, 999_010, 100, 50_000, 100, at_top=False)
    assert (plan.min_split_ms, plan.oldest_ms) == (2_000, None)


def test_what_the_plan_already_knows_is_kept() -> None:
    plan = Plan([Partition(1, None, None)], oldest_ms=123, min_split_ms=7)
    plan.learn_density(1_000_000, 999_010, 100, 50_000, 100, at_top=True)
    assert (plan.min_split_ms, plan.oldest_ms) == (7, 123)


@pytest.mark.parametrize(("first", "last", "events"), [(1_000, 1_000, 50), (1_000, 900, 1), (900, 1_000, 50)])
def test_a_page_that_shows_no_spread_teaches_nothing(first: int, last: int, events: int) -> None:
    plan = Plan([Partition(1, None, None)], oldest_ms=None)
    plan.learn_density(first, last, events, 50_000, 100, at_top=True)
    assert (plan.min_split_ms, plan.oldest_ms) == (0, None)


def test_a_dense_page_still_gives_a_split_width_of_at_least_1_ms() -> None:
    plan = Plan([Partition(1, None, None)], oldest_ms=None)
    plan.learn_density(1_000, 999, 1_000, None, 1, at_top=True)  # 1,000 events in 1 ms, a page of 1
    assert (plan.min_split_ms, plan.oldest_ms) == (1, None)
