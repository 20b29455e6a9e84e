"""How found documents are written for a model: before the user's message in a turn, in the
QueryFunction tool's answer, and in /api/v1/answer's prompt."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from botline.knowledge.search import SearchResult

OPEN, CLOSE = "<knowledge>", "</knowledge>"
INTRO = ("Documents found in the knowledge base for this message, best match first. Use them when they answer "
         "it; say so when they do not.")
NOTHING = "No document in the knowledge base matches this search."


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def render(results: Sequence[SearchResult], *, use_metadata: bool = False, intro: str = INTRO) -> str:
    """The documents as one block; with `use_metadata` each document's metadata follows its text as JSON
    (knowledgeUseMetaDescriptions); documents sharing a result's __ref follow it as related text."""
    if not results:
        return NOTHING
    lines = [OPEN, intro]
    for result in results:
        document = result.document
        lines.append(f'<document name="{_escape(document.name)}" score="{result.score:.2f}">')
        lines.append(document.contents)
        if use_metadata and document.metadata:
            lines.append(f"<metadata>{orjson.dumps(document.metadata).decode()}</metadata>")
        for related in result.references:
            lines.append(f'<related name="{_escape(related.name)}">\n{related.contents}\n</related>')
        lines.append("</document>")
    lines.append(CLOSE)
    return "\n".join(lines)
