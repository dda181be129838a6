"""Places named in a question: "dogs on the beach in Portugal" searches "dogs on the beach"
among the photos taken in Portugal.

Only places the library's photos were taken in are recognised (a town named Beach or Bath
can be captured only by a library that has photos from it), and then only as places are
written: with a capital letter, and either after "in", "at", "from", "near" or "around", or,
for a country or region, anywhere ("Portugal dogs"). A city without a preposition stays a
word ("Bath time"); a lower-case word never is a place ("a bath", "a nice view").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dam_pipeline.places.gazetteer import fold

PREPOSITIONS = ("in", "at", "from", "near", "around")


def places_in_question(
    question: str, cities: Iterable[str], areas: Iterable[str]
) -> tuple[list[str], str]:
    """(the known places the question names, the question without them). ``cities``:
    city names; ``areas``: region and country names (recognised without a preposition)."""
    kinds = {name: "city" for name in cities if name}
    kinds.update({name: "area" for name in areas if name})
    found: list[str] = []
    rest = question
    preposition = rf"\b(?:{'|'.join(PREPOSITIONS)})\s+(?:the\s+)?"
    coordinated = r"(?:\band|\bor|,)\s+"  # "in Lisbon and Porto": after a place found
    while True:
        before = len(found)
        for name in sorted(set(kinds) - set(found), key=len, reverse=True):  # "New York" first
            spelled = r"\s+".join(_capital(re.escape(w)) for w in name.split())
            leads = [preposition, coordinated] if found else [preposition]
            if kinds[name] == "area":
                leads.append(r"(?<![\w-])")
            for lead in leads:
                match = re.search(rf"{lead}(?P<name>{spelled})(?![\w-])", _unaccented(rest))
                if match:
                    found.append(name)
                    rest = rest[: match.start()] + " " + rest[match.end() :]
                    break
        if len(found) == before:
            return found, " ".join(rest.split()).strip(" ,")


def _capital(escaped_word: str) -> str:
    first, tail = escaped_word[:1], escaped_word[1:]
    return f"{fold(first).upper()}(?i:{fold(tail)})" if first.isalpha() else escaped_word


def _unaccented(text: str) -> str:
    """The question with accents removed but its capitals kept, the same length."""
    return "".join(fold(c)[:1].upper() if c.isupper() else (fold(c)[:1] or c) for c in text)
