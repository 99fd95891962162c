"""The constraints grader: every check kind passes and fails where it should, and specs are
validated with the failing field named."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.calibrate.graders import Grader, GraderError, parse_grader
from proxy.calibrate.graders.constraints import CHECKS
from proxy.calibrate.graders.text_checks import (
    count_paragraphs,
    count_sentences,
    count_words,
    occurrences,
)


def constraints(*checks: dict[str, Any]) -> Grader:
    grader = parse_grader({"type": "constraints", "checks": list(checks)})
    assert grader is not None
    assert grader.kind == "constraints"
    return grader


# (check, an answer that passes, an answer that fails, the failure detail)
CASES: list[tuple[dict[str, Any], str, str, str]] = [
    ({"check": "min_words", "value": 3}, "one two three", "one, two", "min_words: 2 < 3"),
    ({"check": "max_words", "value": 3}, "one - two -- three", "a b c d", "max_words: 4 > 3"),
    (
        {"check": "min_sentences", "value": 2},
        "It rains. We stay in!",
        "It rains, we stay in.",
        "min_sentences: 1 < 2",
    ),
    (
        {"check": "max_sentences", "value": 2},
        "One. Two?",
        "One. Two? Three!",
        "max_sentences: 3 > 2",
    ),
    ({"check": "min_lines", "value": 2}, "a\n\nb", "a\n  \n", "min_lines: 1 < 2"),
    ({"check": "max_lines", "value": 2}, "a\nb\n\n", "a\nb\nc", "max_lines: 3 > 2"),
    ({"check": "exact_lines", "value": 2}, "a\n\nb\n", "a b", "exact_lines: 1 instead of 2"),
    (
        {"check": "paragraphs", "value": 2},
        "First para\nstill first.\n\n  \nSecond.",
        "One\nparagraph only.",
        "paragraphs: 1 instead of 2",
    ),
    ({"check": "lowercase"}, "all quiet here.", "All quiet here.", "lowercase: 1 uppercase"),
    ({"check": "lowercase"}, "all quiet", "123 !", "lowercase: no letters"),
    ({"check": "uppercase"}, "LOUD AND CLEAR 42", "LOUD and clear", "uppercase: 8 lowercase"),
    ({"check": "uppercase"}, "LOUD", "", "uppercase: no letters"),
    (
        {"check": "include_words", "words": ["sea", "blue whale"]},
        "The Sea holds the BLUE\nwhale.",
        "The seashore holds a whale.",
        "include_words: missing 'sea', 'blue whale'",
    ),
    (
        {"check": "exclude_words", "words": ["very", "really"]},
        "Everything is fine, truly.",
        "It is Very good.",
        "exclude_words: contains 'very'",
    ),
    (
        {"check": "keyword_frequency", "word": "sea", "min": 2},
        "Sea, sea and more SEA.",
        "The sea and the seas.",
        "keyword_frequency: 'sea' 1 times < 2",
    ),
    (
        {"check": "keyword_frequency", "word": "sea", "min": 1, "max": 2},
        "The sea, the sea.",
        "sea sea sea",
        "keyword_frequency: 'sea' 3 times > 2",
    ),
    ({"check": "json"}, "```json\n[1, 2]\n```", "{'a': 1}", "json: not JSON"),
    (
        {"check": "json", "keys": ["name", "age"]},
        '  {"name": "Ann", "age": 3, "x": null} ',
        '{"name": "Ann"}',
        "json: missing keys 'age'",
    ),
    ({"check": "json", "keys": ["a"]}, '```\n{"a": 1}\n```', "[1]", "json: JSON list, not an"),
    ({"check": "json"}, '{"a": 1}', 'Here it is: {"a": 1}', "json: not JSON"),
    (
        {"check": "bullets", "value": 2},
        "Intro\n- one\n  * two\n**bold** line",
        "- one\n- two\n- three",
        "bullets: 3 instead of 2",
    ),
    ({"check": "min_bullets", "value": 2}, "* a\n* b\n* c", "-a\n- b", "min_bullets: 1 < 2"),
    (
        {"check": "starts_with", "text": "Dear Sir"},
        "  Dear Sir, hello",
        "dear Sir, hello",
        "starts_with: not 'Dear Sir'",
    ),
    (
        {"check": "ends_with", "text": "Any questions?"},
        "That is all. Any questions?  \n",
        "Any questions? Thanks.",
        "ends_with: not 'Any questions?'",
    ),
    ({"check": "no_commas"}, "No commas here.", "One, two, three", "no_commas: 2 commas"),
    ({"check": "title"}, "<<The Sea>>\nWaves.", "<< >> The Sea", "title: no <<title>>"),
    ({"check": "quoted"}, ' "All of it." ', '"Half" of it', "quoted: not wrapped"),
    ({"check": "quoted"}, "“Curly too.”", '"', "quoted: not wrapped"),
    ({"check": "max_chars", "value": 5}, "  12345  ", "123456", "max_chars: 6 > 5"),
    (
        {"check": "numbered_items", "value": 2},
        "1. one\n2. two\nNot 3.",
        "1. one\n2. two\n 3. three",
        "numbered_items: 3 instead of 2",
    ),
    (
        {"check": "placeholders", "value": 2},
        "Dear [name], at [address].",
        "Dear [name], see [the docs](http://x).",
        "placeholders: 1 < 2",
    ),
]


def test_every_check_kind_is_covered() -> None:
    assert {spec["check"] for spec, *_ in CASES} == set(CHECKS)


@pytest.mark.parametrize(("spec", "passing", "failing", "detail"), CASES)
def test_check_passes_and_fails(
    spec: dict[str, Any], passing: str, failing: str, detail: str
) -> None:
    grader = constraints(spec)
    passed = grader.check(passing)
    assert passed.passed, passed.detail
    failed = grader.check(failing)
    assert not failed.passed
    assert failed.detail.startswith(detail)


def test_all_checks_must_pass_and_the_detail_lists_each_failure() -> None:
    grader = constraints(
        {"check": "max_words", "value": 5},
        {"check": "lowercase"},
        {"check": "no_commas"},
    )
    assert grader.check("short and quiet").passed
    assert grader.check("short and quiet").detail == "all 3 checks passed"
    verdict = grader.check("Far, far too many words for this.")
    assert not verdict.passed
    assert verdict.detail == "max_words: 7 > 5; lowercase: 1 uppercase letters; no_commas: 1 commas"


@pytest.mark.parametrize(
    ("text", "words", "sentences", "paragraphs"),
    [
        ("Hello, world - it's 3 p.m. now.", 6, 2, 1),
        ("  ", 0, 0, 0),
        ("Wait... what?! Yes.\n\nNew paragraph", 5, 4, 2),
    ],
)
def test_counting_definitions(text: str, words: int, sentences: int, paragraphs: int) -> None:
    assert count_words(text) == words
    assert count_sentences(text) == sentences
    assert count_paragraphs(text) == paragraphs


def test_occurrences_are_whole_words_ignoring_case() -> None:
    assert occurrences("Sea sea, SEA! seas undersea sea_side", "sea") == 3
    assert occurrences("new  York and new\nyork", "New York") == 2


@pytest.mark.parametrize(
    ("checks", "message"),
    [
        ([], "grader.checks: List should have at least 1 item"),
        (
            [{"check": "max_words", "value": 3}, {"check": "lowercase"}, {"check": "foo"}],
            "grader.checks[2].check: unknown check 'foo'; known: min_words, max_words,",
        ),
        ([{"value": 3}], "grader.checks[0].check: missing or not a string"),
        ([{"check": "max_words"}], "grader.checks[0].value: Field required"),
        ([{"check": "max_words", "value": "3"}], "grader.checks[0].value: Input should be"),
        ([{"check": "max_words", "value": -1}], "grader.checks[0].value: Input should be greater"),
        ([{"check": "lowercase", "value": 1}], "grader.checks[0].value: Extra inputs"),
        ([{"check": "include_words", "words": []}], "grader.checks[0].words: List should"),
        ([{"check": "include_words", "word": "x"}], "grader.checks[0].words: Field required"),
        ([{"check": "include_words", "words": ["a", " "]}], "grader.checks[0].words[1]: String"),
        ([{"check": "keyword_frequency", "word": "", "min": 1}], "grader.checks[0].word: String"),
        ([{"check": "keyword_frequency", "word": "x"}], "grader.checks[0]: Value error, give"),
        ([{"check": "json", "keys": "a"}], "grader.checks[0].keys: Input should be a valid list"),
        ([{"check": "starts_with", "text": ""}], "grader.checks[0].text: String should have"),
    ],
)
def test_bad_checks_name_the_field(checks: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(GraderError) as raised:
        parse_grader({"type": "constraints", "checks": checks})
    assert str(raised.value).startswith(message)
