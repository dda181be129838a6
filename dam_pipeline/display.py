"""HTML for notebooks: ``Hit``, a list of hits and ``Answer`` show as a grid of thumbnails
(``_repr_html_``), so ``api.search("…")`` shows its images in Jupyter with no extra code."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dam_pipeline.reasoning import Answer
    from dam_pipeline.retrieval import Hit

CARD_STYLE = (
    "display:inline-block;vertical-align:top;width:180px;margin:4px;font:12px sans-serif;"
    "border:1px solid #ddd;border-radius:6px;overflow:hidden"
)


def _card(hit: Hit, label: str = "") -> str:
    image = ""
    uri = hit.thumbnail(hit.normalized_hash) if hit.thumbnail and hit.normalized_hash else ""
    if uri:
        image = f'<img src="{uri}" alt="{html.escape(hit.caption)}" style="width:100%">'
    badge = f"<b>{label}</b> " if label else ""
    return (
        f'<div style="{CARD_STYLE}">{image}<div style="padding:4px 6px">{badge}'
        f"<code>{html.escape(hit.key)}</code> · {hit.relevance:.2f}<br>"
        f"{html.escape(hit.caption)}</div></div>"
    )


def hits_html(hits: Sequence[Hit]) -> str:
    if not hits:
        return "<p>Nothing in the library matches well.</p>"
    return "<div>" + "".join(_card(hit) for hit in hits) + "</div>"


CITATION = re.compile(r"\[S(\d{1,3})\]")


def answer_text_html(text: str, sources: int, cite: Callable[[int], str]) -> str:
    """An answer as HTML: escaped, line breaks kept, and each citation of an existing
    source [Sn] rendered by ``cite(n)`` (a link on the web page, bold in a notebook)."""

    def render(match: re.Match) -> str:
        number = int(match.group(1))
        return cite(number) if 1 <= number <= sources else match.group(0)

    return CITATION.sub(render, html.escape(text)).replace("\n", "<br>")


def answer_html(answer: Answer) -> str:
    text = answer_text_html(answer.text, len(answer.sources), lambda n: f"<b>[S{n}]</b>")
    cards = "".join(_card(hit, f"S{n}") for n, hit in enumerate(answer.sources, start=1))
    return f"<p>{text}</p><div>{cards}</div>"
