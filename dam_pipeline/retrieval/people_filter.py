"""People named in a question: "Maria at the beach" searches "at the beach" among the photos
Maria is in.

A known name is recognised as whole words, written with a capital letter as names are (so a
person named "Will" does not capture "will", nor "Rose" the flower "rose"); a name of
several words matches in any case. The words that asked for a picture ("photos of") and
the name are taken out; what is left is what the photos should show, or nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dam_pipeline.retrieval.search import focus_question

_SCAFFOLD = frozenset(
    {
        "how",
        "many",
        "photos",
        "photo",
        "pictures",
        "picture",
        "images",
        "image",
        "of",
        "with",
        "and",
        "are",
        "there",
        "do",
        "i",
        "have",
        "we",
        "show",
        "me",
        "all",
        "the",
        "a",
        "any",
    }
)
_JOINERS = re.compile(r"^(?:(?:and|&|with|,|of|the|photos?|pictures?|images?)\s*)+$", re.I)


def names_in_question(question: str, known: Iterable[str]) -> tuple[list[str], str]:
    """(the known names the question mentions, the question without them)."""
    found: list[str] = []
    rest = question
    for name in sorted(set(known), key=len, reverse=True):  # "Maria Lopez" before "Maria"
        if len(name.split()) > 1:
            written = rf"(?i:{re.escape(name)})"
        else:  # a capital first letter, as a name is written
            written = rf"{re.escape(name[:1].upper())}(?i:{re.escape(name[1:])})"
        pattern = re.compile(rf"(?<![\w-]){written}(?:'s)?(?![\w-])")
        if pattern.search(rest):
            found.append(name)
            rest = pattern.sub(" ", rest)
    return found, " ".join(rest.split())


def subject_left(question: str) -> str:
    """What the photos should show once names are out ("" if only names were asked for)."""
    subject = focus_question(question).strip(" ?!.,")
    if not subject or _JOINERS.match(subject + " "):
        return ""
    words = re.findall(r"[\w']+", subject.lower())
    return "" if all(word in _SCAFFOLD for word in words) else subject
