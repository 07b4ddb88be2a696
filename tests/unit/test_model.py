import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain import InvalidName, InvalidPhoneNumber, Name, PhoneNumber, User, canonical_name
from domain.model import epoch_ms, from_epoch_ms

letters = st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd"))


@pytest.mark.parametrize("length, valid", [(7, False), (8, True), (32, True), (33, False)])
def test_name_length_edges(length, valid):
    text = "x" * length
    if valid:
        assert Name(text).value == text
    else:
        with pytest.raises(InvalidName):
            Name(text)


@given(st.text(letters, min_size=8, max_size=32), st.text(" \t", max_size=5), st.text(" \t\n", max_size=5))
def test_surrounding_whitespace_is_not_part_of_the_name(core, left, right):
    assume(unicodedata.is_normalized("NFC", core))
    assert Name(left + core + right).value == core


@given(st.text(letters, min_size=1, max_size=7))
def test_whitespace_does_not_make_a_short_name_long(core):
    with pytest.raises(InvalidName):
        Name(" " * 20 + core + " " * 20)


@given(st.text(letters, min_size=8, max_size=32))
def test_non_ascii_names_count_characters_not_bytes(text):
    assume(unicodedata.is_normalized("NFC", text))
    assert len(Name(text).value) == len(text)


@pytest.mark.parametrize(
    "bad",
    [
        "Krishna\x00Mohan",
        "Krishna\r\nMohan",
        "Krishna\u200fMohan",
        "Krishna\u202eMohan",
        "Krishna\u00a0Mohan",
        "Krishna\u2028Mohan",
        "Krishna\ue000Mohan",
    ],
)
def test_control_and_bidi_characters_are_refused(bad):
    with pytest.raises(InvalidName):
        Name(bad)


def test_name_is_normalized_to_nfc():
    decomposed = "Jose\u0301 Antonio"
    assert Name(decomposed).value == "Jos\u00e9 Antonio"


@pytest.mark.parametrize("raw", ["Alice Smith", "alice smith", "ALICE SMITH  ", "  alice smith"])
def test_canonical_name_ignores_case_and_surrounding_space(raw):
    assert canonical_name(raw) == "alice smith"


def test_canonical_name_keeps_sharp_s_like_mariadb_does():
    assert canonical_name("Strauß Johann") != canonical_name("Strauss Johann")


@pytest.mark.parametrize(
    "value, valid", [(8_999_999_999, False), (9_000_000_000, True), (2**63 - 1, True), (2**63, False)]
)
def test_phone_edges(value, valid):
    if valid:
        assert PhoneNumber(value).value == value
    else:
        with pytest.raises(InvalidPhoneNumber):
            PhoneNumber(value)


@pytest.mark.parametrize("bad", [True, 9731423166.0, "9731423166", None])
def test_phone_must_be_an_integer(bad):
    with pytest.raises(InvalidPhoneNumber):
        PhoneNumber(bad)


def test_user_since_is_utc_to_the_millisecond():
    since = datetime(2022, 9, 1, 15, 30, 0, 123_999, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    user = User(Name("KrishnaMohan"), PhoneNumber(9731423166), since)
    assert user.since == datetime(2022, 9, 1, 10, 0, 0, 123_000, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_epoch_ms_round_trips(ms):
    assert epoch_ms(from_epoch_ms(ms)) == ms
