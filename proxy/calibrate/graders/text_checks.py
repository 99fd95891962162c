"""Counts and tests over an answer's text, for the ``constraints`` grader.

The definitions (what a word, sentence, line or bullet is) are stated in
``proxy.calibrate.graders.constraints``. A ``*_failure`` function returns ``None`` when the text
passes, else the reason it fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")
_BULLET = re.compile(r"^[ \t]*[-*] ", re.MULTILINE)
_NUMBERED_ITEM = re.compile(r"^[ \t]*\d+\. ", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\](?!\()")
_TITLE = re.compile(r"<<[^<>\n]*\S[^<>\n]*>>")
_JSON_FENCE = re.compile(r"\A```(?:json)?[ \t]*\n(.*)\n[ \t]*```\Z", re.DOTALL | re.IGNORECASE)
_QUOTES = (('"', '"'), ("“", "”"))


def _has_word_character(piece: str) -> bool:
    return any(char.isalnum() for char in piece)


def count_words(text: str) -> int:
    return sum(1 for token in text.split() if _has_word_character(token))


def count_sentences(text: str) -> int:
    return sum(1 for piece in _SENTENCE_END.split(text) if _has_word_character(piece))


def count_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def count_paragraphs(text: str) -> int:
    return sum(1 for piece in _BLANK_LINES.split(text.strip()) if piece.strip())


def count_bullets(text: str) -> int:
    return len(_BULLET.findall(text))


def count_numbered_items(text: str) -> int:
    return len(_NUMBERED_ITEM.findall(text))


def count_placeholders(text: str) -> int:
    return len(_PLACEHOLDER.findall(text))


def occurrences(text: str, phrase: str) -> int:
    """How often ``phrase`` occurs in ``text`` as a whole word or phrase, ignoring case; any run
    of whitespace in the phrase matches any run in the text."""
    body = r"\s+".join(re.escape(word) for word in phrase.split())
    return len(re.findall(rf"(?<!\w){body}(?!\w)", text, re.IGNORECASE))


def lowercase_failure(text: str) -> str | None:
    if not any(char.isalpha() for char in text):
        return "no letters"
    upper = sum(1 for char in text if char.isupper())
    return f"{upper} uppercase letters" if upper else None


def uppercase_failure(text: str) -> str | None:
    if not any(char.isalpha() for char in text):
        return "no letters"
    lower = sum(1 for char in text if char.islower())
    return f"{lower} lowercase letters" if lower else None


def comma_failure(text: str) -> str | None:
    commas = text.count(",")
    return f"{commas} commas" if commas else None


def title_failure(text: str) -> str | None:
    return None if _TITLE.search(text) else "no <<title>>"


def quoted_failure(text: str) -> str | None:
    """Fails unless the stripped text is wrapped in one pair of double quotes, straight or
    curly."""
    text = text.strip()
    wrapped = any(
        len(text) >= 2 and text.startswith(opening) and text.endswith(closing)
        for opening, closing in _QUOTES
    )
    return None if wrapped else "not wrapped in double quotes"


def json_failure(text: str, keys: Sequence[str] | None) -> str | None:
    """Fails unless the stripped text (optionally inside one ```json or ``` fence) parses as
    JSON and, when ``keys`` is given, is an object with each of those top-level keys."""
    text = text.strip()
    if fenced := _JSON_FENCE.match(text):
        text = fenced[1]
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if keys is None:
        return None
    if not isinstance(value, dict):
        return f"JSON {type(value).__name__}, not an object"
    missing = [key for key in keys if key not in value]
    return f"missing keys {', '.join(map(repr, missing))}" if missing else None
