"""``jobwarden.wire``: the one conversion of Struct, Timestamp and Duration, and of durations as written."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st
from jobwarden import wire
from jobwarden.v1 import job_pb2

# -- Struct ----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.text(max_size=8) | st.integers(-(2**53) + 1, 2**53 - 1),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_a_json_object_comes_back_as_it_was_sent_integers_as_integers(data: dict[str, object]) -> None:
    back = wire.struct_to_dict(wire.dict_to_struct(data))
    assert back == data
    assert [type(v) for v in _leaves(back)] == [type(v) for v in _leaves(data)]


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for key in sorted(value) for leaf in _leaves(value[key])]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_numbers_beyond_what_a_double_holds_exactly_stay_floats() -> None:
    back = wire.struct_to_dict(wire.dict_to_struct({"big": 2.0**53, "half": 0.5, "neg": -3.0}))
    assert back == {"big": 2.0**53, "half": 0.5, "neg": -3}
    assert isinstance(back["big"], float)
    assert isinstance(back["neg"], int)


def test_a_struct_is_filled_in_place_when_given() -> None:
    request = job_pb2.Job()
    returned = wire.dict_to_struct({"a": 1}, request.input)
    assert returned is request.input
    assert wire.struct_to_dict(request.input) == {"a": 1}
    assert wire.dict_to_struct(None) == struct_pb2.Struct()


def test_what_a_struct_cannot_hold_is_refused() -> None:
    with pytest.raises((TypeError, ValueError)):
        wire.dict_to_struct({"when": datetime.now(UTC)})


def test_message_json_keeps_integers_and_the_protos_field_names() -> None:
    job = job_pb2.Job(id="j", attempt=2)
    wire.dict_to_struct({"asset_id": 42, "ratio": 0.5}, job.input)
    data = wire.message_json(job)
    assert data["input"] == {"asset_id": 42, "ratio": 0.5}
    assert isinstance(data["input"]["asset_id"], int)
    assert data["attempt"] == 2


# -- Timestamp -----------------------------------------------------------------------------------


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_epoch_seconds_come_back_within_half_a_nanosecond(seconds: float) -> None:
    stamp = wire.timestamp(seconds)
    assert 0 <= stamp.nanos < 1_000_000_000
    assert abs(wire.timestamp_seconds(stamp) - seconds) <= 5e-10 + abs(seconds) * 2**-52


def test_a_timestamp_rounds_to_the_nearest_nanosecond_and_carries() -> None:
    assert (wire.timestamp(1.0000000004).seconds, wire.timestamp(1.0000000004).nanos) == (1, 0)
    assert (wire.timestamp(1.9999999996).seconds, wire.timestamp(1.9999999996).nanos) == (2, 0)
    # Before 1970 the nanos stay positive: -0.25 is 0.75 s after -1.
    assert (wire.timestamp(-0.25).seconds, wire.timestamp(-0.25).nanos) == (-1, 750_000_000)


def test_a_datetime_is_a_timestamp_a_naive_one_in_utc() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    stamp = wire.timestamp(moment)
    assert (stamp.seconds, stamp.nanos) == (int(moment.timestamp()), 123_456_000)
    assert wire.timestamp(moment.replace(tzinfo=None)) == stamp
    assert wire.timestamp(moment.astimezone(timezone(timedelta(hours=2)))) == stamp
    assert wire.timestamp_datetime(stamp) == moment


def test_an_unset_timestamp_is_none_or_zero() -> None:
    assert wire.timestamp_datetime(timestamp_pb2.Timestamp()) is None
    assert wire.timestamp_seconds(timestamp_pb2.Timestamp()) == 0.0


def test_a_timestamp_is_filled_in_place_when_given() -> None:
    job = job_pb2.Job()
    wire.timestamp(12.5, job.created_at)
    assert (job.created_at.seconds, job.created_at.nanos) == (12, 500_000_000)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e12, -1e12, 10**400])
def test_a_moment_outside_a_timestamp_is_refused_and_nothing_is_set(bad: float) -> None:
    job = job_pb2.Job()
    with pytest.raises(ValueError, match="timestamp"):
        wire.timestamp(bad, job.created_at)
    assert not job.HasField("created_at")


@pytest.mark.parametrize("bad", [True, "5", None])
def test_what_is_not_a_number_is_not_a_moment(bad: object) -> None:
    with pytest.raises(TypeError, match="number of seconds"):
        wire.timestamp(bad)  # type: ignore[arg-type]


# -- Duration ------------------------------------------------------------------------------------


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_seconds_come_back_within_half_a_nanosecond_nanos_signed_like_seconds(seconds: float) -> None:
    value = wire.duration(seconds)
    assert abs(value.nanos) < 1_000_000_000
    assert value.seconds * value.nanos >= 0
    assert abs(wire.duration_seconds(value) - seconds) <= 5e-10 + abs(seconds) * 2**-52


def test_a_duration_rounds_to_the_nearest_nanosecond_ties_to_even() -> None:
    assert wire.duration(0.1).nanos == 100_000_000
    assert (wire.duration(0.9999999999).seconds, wire.duration(0.9999999999).nanos) == (1, 0)
    assert (wire.duration(-1.5).seconds, wire.duration(-1.5).nanos) == (-1, -500_000_000)
    # 2.5e-9 is 2.5 ns as near as a double holds it (a hair above): it rounds up; 0.5 ns exactly ties to 0.
    assert wire.duration(2**-31).nanos == round(2**-31 * 1e9)
    assert wire.duration(0.5e-9).nanos == 0


def test_a_timedelta_is_a_duration() -> None:
    assert wire.duration(timedelta(minutes=5, microseconds=7)) == duration_pb2.Duration(
        seconds=300, nanos=7000
    )
    assert wire.duration(timedelta(seconds=-1.5)) == duration_pb2.Duration(seconds=-1, nanos=-500_000_000)


def test_the_longest_duration_is_protobufs() -> None:
    longest = wire.duration(wire.MAX_DURATION_SECONDS)
    assert longest.seconds == wire.MAX_DURATION_SECONDS
    assert wire.duration(-wire.MAX_DURATION_SECONDS).seconds == -wire.MAX_DURATION_SECONDS


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -math.inf, wire.MAX_DURATION_SECONDS + 0.5, 10**400, timedelta.max]
)
def test_a_duration_beyond_its_limits_is_refused_and_nothing_is_set(bad: float | timedelta) -> None:
    job = job_pb2.Job()
    with pytest.raises(ValueError, match="not a duration"):
        wire.duration(bad, job.timeouts.heartbeat)
    assert not job.timeouts.HasField("heartbeat")


# -- durations as people write them ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("0.5", 0.5),
        ("250ms", 0.25),
        ("30s", 30.0),
        (" 5m ", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("2m 30s", 150.0),
        ("1d12h", 129600.0),
        ("1.5s", 1.5),
    ],
)
def test_durations_as_people_write_them(text: str, seconds: float) -> None:
    assert wire.parse_duration(text) == seconds
    assert wire.parse_optional_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5s", "", "5x", "1h30", "h", "5 m m", "1e3", "none"])
def test_what_is_not_a_duration_says_what_one_is(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration \(e\.g\. 30, 250ms"):
        wire.parse_duration(text)


def test_none_takes_a_setting_away_where_that_is_allowed() -> None:
    assert wire.parse_optional_duration("None") is None
    with pytest.raises(ValueError, match="or none"):
        wire.parse_optional_duration("soon")


def test_a_duration_too_long_for_a_float_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        wire.parse_duration("9" * 400 + "d")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (30, "30s"),
        (90, "90s"),
        (300, "5m"),
        (5400, "90m"),
        (7200, "2h"),
        (86400, "1d"),
    ],
)
def test_durations_are_written_the_way_they_are_read(seconds: float, text: str) -> None:
    assert wire.format_duration(seconds) == text
    assert wire.parse_duration(text) == seconds
