import re

from hypothesis import given
from hypothesis import strategies as st

from api.openapi import NAME_PATTERN, openapi_document
from domain import Name


@given(st.from_regex(NAME_PATTERN, fullmatch=True))
def test_every_name_the_schema_allows_is_valid(text):
    assert Name(text).value == text


def test_the_document_uses_the_pattern():
    parameter = openapi_document()["paths"]["/user/{name}"]["get"]["parameters"][0]
    assert parameter["schema"]["pattern"] == NAME_PATTERN
    assert re.fullmatch(NAME_PATTERN, "KrishnaMohan")
