"""The offline reasoner: a grounded answer built only from the retrieved captions, no LLM.

It says which images match, quotes what their captions say, names the words of the
question each one shares, and cites them as [S1]..[Sn]. Captions are treated as data:
nothing in them is followed, only quoted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from dam_pipeline.places.gazetteer import place_words
from dam_pipeline.reasoning.base import Answer, neutralize
from dam_pipeline.retrieval import Hit

STRONG_MATCH_MARGIN = 0.1
"""Sources within this similarity of the best one are presented as matches."""
CANDIDATE_MARGIN = 0.2
"""Sources within this similarity of the best one are named as weaker candidates."""
MIN_RELEVANT_SCORE = 0.35
"""Below this cosine similarity a caption is unrelated to the question (MiniLM scale)."""

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "and",
        "or",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "from",
        "by",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "where",
        "when",
        "why",
        "how",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "your",
        "show",
        "find",
        "picture",
        "pictures",
        "photo",
        "photos",
        "image",
        "images",
        "any",
        "some",
        "all",
        "me",
        "can",
        "could",
        "would",
        "should",
        "please",
    ]
)


def content_words(text: str) -> set[str]:
    """The words of a text that carry meaning (no stopwords; a plural as its singular)."""
    words = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOPWORDS or len(word) < 2:
            continue
        words.add(word[:-1] if word.endswith("s") and len(word) > 3 else word)
    return words


def _quote(caption: str) -> str:
    return neutralize(caption).replace('"', "'").strip()


class ExtractiveReasoner:
    name = "extractive"

    def answer(
        self, question: str, sources: Sequence[Hit], images: Mapping[int, bytes] | None = None
    ) -> Answer:
        sources = list(sources)
        relevant = [h for h in sources if h.score >= MIN_RELEVANT_SCORE]
        if not relevant:
            best = f" (best similarity {sources[0].score:.2f})" if sources else ""
            text = f'No image in the library matches "{question}" well enough{best}.'
            return Answer(question, text, sources, [], self.name)

        top = relevant[0].score
        matches = [h for h in relevant if h.score >= top - STRONG_MATCH_MARGIN]
        asked = content_words(question)
        lines = []
        for hit in matches:
            number = sources.index(hit) + 1
            shared = sorted(asked & content_words(f"{hit.caption} {' '.join(hit.tags)}"))
            why = (
                f"; it shares {', '.join(repr(w) for w in shared)} with the question"
                if shared
                else ""
            )
            with_people = f" (with {neutralize(', '.join(hit.people))})" if hit.people else ""
            where = place_words(hit.place)
            in_place = f" (taken in {neutralize(where)})" if where else ""
            lines.append(
                f"{neutralize(hit.label)}{with_people}{in_place} [S{number}]: its caption reads "
                f'"{_quote(hit.caption)}" (similarity {hit.score:.2f}{why}).'
            )
        lead = "The best match is" if len(matches) == 1 else f"{len(matches)} images match best:"
        text = (
            f"{lead} " + " ".join(lines)
            if len(matches) == 1
            else f"{lead}\n" + "\n".join(f"- {line}" for line in lines)
        )
        others = [h for h in relevant if h not in matches and h.score >= top - CANDIDATE_MARGIN]
        if others:
            cites = ", ".join(f"{neutralize(h.key)} [S{sources.index(h) + 1}]" for h in others)
            text += f"\nWeaker candidates: {cites}."
        cited = sorted({sources.index(h) + 1 for h in matches + others})
        return Answer(question, text, sources, cited, self.name)
