"""The JSONL line format that the document import takes and the export writes.

One JSON object per line: `docId` (or `docid`) names the document, `text` is its text, and `__ref`,
`__tags`, `__meta` are optional. An import is taken whole or not at all: the first bad line is
reported with its number and why, and nothing of the file is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from botline.domain.knowledge import REFERENCE_MAX, DocumentWrite, KnowledgeDocument
from botline.domain.limits import DOCUMENT_MAX, Items, JsonObject, Name

NAME_KEYS = ("docId", "docid")


class ImportRefused(ValueError):
    """A JSONL file that cannot be imported; the message names the line."""


class JsonlLine(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    doc_id: Annotated[str, Field(min_length=1, max_length=256)]
    text: Annotated[str, Field(min_length=1, max_length=DOCUMENT_MAX)]
    ref: Annotated[str | None, Field(default=None, max_length=REFERENCE_MAX, alias="__ref")]
    tags: Annotated[Items[Name] | None, Field(default=None, alias="__tags")]
    meta: Annotated[JsonObject | None, Field(default=None, alias="__meta")]


def _line_error(number: int, exc: ValidationError) -> ImportRefused:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in error["loc"]) or "line"
    where = {"doc_id": "docId", "ref": "__ref", "tags": "__tags", "meta": "__meta"}.get(where.split(".")[0], where)
    return ImportRefused(f"Line {number}: invalid value for {where}: {error['msg'].removeprefix('Value error, ')}.")


def parse(data: bytes, *, max_lines: int, max_chars: int) -> list[DocumentWrite]:
    """Every document of the file, in order; ImportRefused naming the first bad line."""
    writes: list[DocumentWrite] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(writes) >= max_lines:
            raise ImportRefused(f"Line {number}: the file holds more than {max_lines} documents, the most one "
                                "import takes (knowledge.max_import_lines).")
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ImportRefused(f"Line {number}: not valid JSON ({exc}).") from exc
        if not isinstance(value, dict):
            raise ImportRefused(f"Line {number}: each line must be a JSON object.")
        names = [key for key in NAME_KEYS if key in value]
        if len(names) != 1:
            raise ImportRefused(f"Line {number}: give the document's name as exactly one of docId or docid.")
        value["doc_id"] = value.pop(names[0])
        try:
            line = JsonlLine.model_validate(value)
        except ValidationError as exc:
            raise _line_error(number, exc) from exc
        if len(line.text) > max_chars:
            raise ImportRefused(f"Line {number}: text has {len(line.text)} characters; the limit is {max_chars} "
                                "(knowledge.max_document_chars).")
        if line.doc_id in first_line:
            raise ImportRefused(f"Line {number}: docId {line.doc_id!r} was already given on line "
                                f"{first_line[line.doc_id]}.")
        first_line[line.doc_id] = number
        writes.append(DocumentWrite(name=line.doc_id, contents=line.text, reference=line.ref, tags=line.tags,
                                    metadata=line.meta))
    return writes


def export_lines(documents: Iterable[KnowledgeDocument]) -> Iterator[bytes]:
    """The documents as import lines (docId is the name), so an export imports back unchanged."""
    for document in documents:
        line: dict[str, Any] = {"docId": document.name, "text": document.contents}
        if document.reference is not None:
            line["__ref"] = document.reference
        if document.tags:
            line["__tags"] = document.tags
        if document.metadata:
            line["__meta"] = document.metadata
        yield orjson.dumps(line) + b"\n"
