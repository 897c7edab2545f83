"""Checks of untrusted JSON and text: what no store can hold, and nesting no code should walk."""

from __future__ import annotations

import io
import json

import pytest
from rest_framework.exceptions import ParseError

from spinnakr.untrusted import (
    MAX_JSON_DEPTH,
    BoundedJSONParser,
    UntrustedInputError,
    check_json,
    loads_json,
    unstorable,
)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", None),
        ("é€😀", None),
        ("a\x00b", "a NUL character"),
        ("\ud800", "an unpaired surrogate"),
        ("x\udfff", "an unpaired surrogate"),
    ],
)
def test_it_names_what_no_store_can_hold(text: str, problem: str | None) -> None:
    assert unstorable(text) == problem


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_it_accepts_json_nested_up_to_the_limit() -> None:
    assert loads_json(nested(MAX_JSON_DEPTH)) is not None


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 900, 100_000])
def test_it_refuses_json_nested_deeper_than_the_limit(levels: int) -> None:
    with pytest.raises(UntrustedInputError) as caught:
        loads_json(nested(levels))
    assert caught.value.message.endswith(f"nested more than {MAX_JSON_DEPTH} levels deep")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"filters": [["is", "event:page", ["/\x00"]]]}, "filters[0][2][0]: holds a NUL character"),
        ({"include": {"a\ud800": True}}, "include.a\ud800: holds an unpaired surrogate"),
        (["\x00"], "body[0]: holds a NUL character"),
    ],
)
def test_it_names_where_the_unstorable_text_is(value: object, message: str) -> None:
    with pytest.raises(UntrustedInputError) as caught:
        check_json(value)
    assert caught.value.message == message


def test_the_drf_parser_answers_a_parse_error_for_deep_json() -> None:
    with pytest.raises(ParseError) as caught:
        BoundedJSONParser().parse(io.BytesIO(nested(5000).encode()))
    assert str(caught.value.detail) == f"body: nested more than {MAX_JSON_DEPTH} levels deep"


def test_the_drf_parser_answers_a_parse_error_for_an_escaped_surrogate() -> None:
    with pytest.raises(ParseError) as caught:
        BoundedJSONParser().parse(io.BytesIO(json.dumps({"site_id": "\ud800"}).encode()))
    assert str(caught.value.detail) == "site_id: holds an unpaired surrogate"


def test_the_drf_parser_passes_ordinary_json_through() -> None:
    assert BoundedJSONParser().parse(io.BytesIO(b'{"a": [1, "b"]}')) == {"a": [1, "b"]}
