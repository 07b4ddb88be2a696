import unicodedata
from dataclasses import replace
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


@given(st.text(letters, min_size=8, max_size=32), st.integers(0, 5), st.integers(0, 5))
def test_spaces_at_the_ends_are_kept_and_not_counted(core, left, right):
    assume(unicodedata.is_normalized("NFC", core) and core.strip(" ") == core)
    raw = " " * left + core + " " * right
    assert Name(raw).value == raw
    # General_ci pads with spaces (trailing ones do not count) but compares leading ones.
    assert (Name(raw).canonical == Name(core).canonical) is (left == 0)


@pytest.mark.parametrize("edge", ["\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\x0b"])
def test_other_whitespace_at_either_end_is_refused_not_trimmed(edge):
    for raw in (edge + "Renee Dubois", "Renee Dubois" + edge):
        with pytest.raises(InvalidName):
            Name(raw)


@given(st.text(letters, min_size=1, max_size=7))
def test_whitespace_does_not_make_a_short_name_long(core):
    assume(len(unicodedata.normalize("NFC", core)) < 8)  # some letters (U+FB2A) decompose into two
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
        "Krishna\u034fMohan",  # combining grapheme joiner (default-ignorable)
        "Krishna\u115fMohan",  # Hangul choseong filler
        "Krishna\u3164Mohan",  # Hangul filler
        "Krishna\u2800Mohan",  # braille blank
        "Krishna\u200bMohan",  # zero width space
        "Krishna\ufe0fMohan",  # variation selector
        "Krishna\u061cMohan",  # Arabic letter mark (bidi)
        "KrishnaMohan\U000e0041",  # tag character
    ],
)
def test_control_and_bidi_characters_are_refused(bad):
    with pytest.raises(InvalidName):
        Name(bad)


def test_name_is_normalized_to_nfc():
    decomposed = "Jose\u0301 Antonio"
    assert Name(decomposed).value == "Jos\u00e9 Antonio"


@pytest.mark.parametrize("raw", ["Alice Smith", "alice smith", "ALICE SMITH  "])
def test_canonical_name_ignores_case_and_trailing_space_under_general_ci(raw):
    assert canonical_name(raw) == "alice smith"


def test_a_leading_space_makes_another_name_and_is_kept():
    # MySQL compares leading spaces under every collation: ' Bob Smithson' is another row.
    assert canonical_name("  alice smith") != canonical_name("alice smith")
    assert Name(" Bob Smithson").value == " Bob Smithson"
    assert Name(" Bob Smithson").canonical == canonical_name(" Bob Smithson")


@pytest.mark.parametrize("raw, valid", [("   Bob Smi", False), ("  Bob Smith  ", True), (" " * 40 + "Bob Smith", True)])
def test_the_length_does_not_count_spaces_at_the_ends(raw, valid):
    if valid:
        assert Name(raw).value == raw
    else:
        with pytest.raises(InvalidName):
            Name(raw)


def test_canonical_name_follows_mariadb_general_ci_by_default():
    assert canonical_name("Strauß Johann") != canonical_name("Strauss Johann")
    assert canonical_name("Strauß Johann") == canonical_name("Straus Johann")  # general_ci: ß weighs S
    assert canonical_name("Renée Dubois") == canonical_name("RENEE DUBOIS")


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


@pytest.mark.parametrize("ms", [0, 1_700_000_000_123, -86_400_001, 253_402_300_799_999])
def test_a_user_built_from_epoch_ms_is_the_user_built_from_its_datetime(ms):
    built = User.at_epoch_ms(Name("Alice Smith"), PhoneNumber(9000000001), ms)
    plain = User(Name("Alice Smith"), PhoneNumber(9000000001), from_epoch_ms(ms))
    assert built == plain and hash(built) == hash(plain)
    assert built.since_ms == plain.since_ms == ms
    assert replace(built, since=from_epoch_ms(ms - 1)).since_ms == ms - 1  # a copy does not keep the cache


def test_a_name_computes_its_key_once_and_the_cache_changes_neither_equality_nor_hash():
    name = Name("Alice Smith")
    assert "canonical" not in name.__dict__
    assert name.canonical == canonical_name("Alice Smith")
    assert name.__dict__["canonical"] == name.canonical  # later reads are the instance's own
    fresh = Name("Alice Smith")
    assert name == fresh and hash(name) == hash(fresh)
    assert Name.canonical is Name.__dict__["canonical"]  # read on the class: the descriptor, as functools' gives
