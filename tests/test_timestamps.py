import pytest

from ingest.store.timestamps import in_captured_form, parse_timestamp_ms

INSTANT = 1769541612369  # 2026-01-27T19:20:12.369Z


@pytest.mark.parametrize(
    "value",
    [
        INSTANT,
        float(INSTANT),
        "1769541612369",
        "2026-01-27T19:20:12.369Z",
        "2026-01-27T21:20:12.369+02:00",
        "2026-01-27T14:20:12.369-05:00",
        "2026-01-27T19:20:12.369",
        "2026-01-27T19:20:12.369000Z",
        "2026-01-27T19:20:12.369999Z",
        "  2026-01-27T19:20:12.369Z\n",
        "\u200b2026-01-27T19:20:12.369Z",
        "2026-01-27T19:20:12.369Z\ufeff",
        " 1769541612369 ",
        "1769541612.369",
        1769541612.369,
    ],
)
def test_every_form_of_the_same_instant_gives_the_same_millisecond(value: object) -> None:
    assert parse_timestamp_ms(value) == INSTANT


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1769541612, 1769541612000), ("1769541612", 1769541612000), ("2026-01-27T19:20:12Z", 1769541612000)],
)
def test_epoch_seconds_and_whole_second_iso(value: object, expected: int) -> None:
    assert parse_timestamp_ms(value) == expected


@pytest.mark.parametrize(
    "value",
    [None, True, False, "", "   ", "\u200b", "yesterday", "2026-13-45T00:00:00Z", 0, -1, 12345,
     "12345", 10**20, "NaN", {"ts": INSTANT}, [INSTANT], "2026-01-27T19:20:12.369Zjunk"],
)
def test_what_is_not_a_time_gives_none(value: object) -> None:
    assert parse_timestamp_ms(value) is None


@pytest.mark.parametrize(("value", "exact"), [
    (1769541612369, True),
    ("2026-01-27T19:20:12.369Z", True),
    (1769541612, False),  # epoch seconds: the milliseconds are gone
    (1769541612369.0, False),
    ("1769541612369", False),
    ("2026-01-27T19:20:12Z", False),
    ("2026-01-27T19:20:12.369", False),  # no zone
    ("2026-01-27", False),
    (" 2026-01-27T19:20:12.369Z", False),
    (True, False),
])
def test_only_the_captured_forms_name_their_millisecond_exactly(value: object, exact: bool) -> None:
    assert in_captured_form(value) is exact
