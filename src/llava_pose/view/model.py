"""What the site is made of, whatever the source: image pages, list rows, facets and sorts.

A loader (`datasets`, `benchmarks`) turns its files into a `SiteData`; `site.write_site` turns
that into shards. Pages and items are plain JSON-ready dicts, the shapes ``view.js`` draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..records import ImageContext
from ..skeleton import person_labels

# Claim verdicts, worst first: where claims overlap, the text shows the worst one.
VERDICTS = ("contradicted", "supported", "unverifiable")
NO_CLAIMS = "no claims"
SNIPPET_CHARS = 160


@dataclass
class Facet:
    """A filter group: a row has zero or more of its values (within a group, any selected
    value matches; across groups, all must)."""

    name: str
    title: str
    values: list[str] = field(default_factory=list)

    def add(self, value: str) -> None:
        if value not in self.values:
            self.values.append(value)


@dataclass(slots=True)
class Row:
    """One entry of the list: what the list shows, and what filters, sorts and search read."""

    key: str  # the image page it opens
    item: int  # index of its item on that page
    id: str
    badges: list[tuple[str, str]]  # (kind, text); kind picks the badge's style
    snippet: str
    text: str  # searchable text (lowercased when written)
    facets: dict[str, list[str]]  # facet name -> values of this row
    sort: dict[str, float | None] = field(default_factory=dict)


@dataclass
class SiteData:
    """Everything one site shows."""

    kind: str  # "dataset" | "ehpaub" | "poseqa"
    title: str
    noun: str  # what a row is, plural ("records", "questions")
    summary: list[tuple[str, str]]  # (label, value) lines of the header
    facets: list[Facet]
    sorts: list[tuple[str, str]]  # (name, title); every row's `sort` has each name
    pages: dict[str, dict[str, Any]]  # image key -> page (see `page`)
    rows: list[Row]
    notes: list[str] = field(default_factory=list)  # warnings shown above the list


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """One line of at most `limit` characters."""
    one = " ".join(text[: 4 * limit].split())
    return one if len(one) <= limit else one[: limit - 1].rstrip() + "…"


def page(key: str, ctx: ImageContext | None, image_id: int | None) -> dict[str, Any]:
    """An image page without items: the image's size, captions, objects and persons (boxes and
    keypoints normalized to [0, 1], as in the contexts), each person labelled P1.. from the
    left as the text counts them."""
    if ctx is None:
        return {
            "key": key,
            "image_id": image_id,
            "src": None,
            "w": 0,
            "h": 0,
            "context": False,
            "captions": [],
            "objects": [],
            "persons": [],
            "items": [],
        }
    labels = person_labels(ctx)
    return {
        "key": key,
        "image_id": ctx.image_id,
        "src": None,
        "w": ctx.width,
        "h": ctx.height,
        "context": True,
        "captions": list(ctx.captions),
        "objects": [{"category": o.category, "box": o.box} for o in ctx.objects],
        "persons": [
            {"label": labels[i], "box": p.box, "kp": p.keypoints} for i, p in enumerate(ctx.persons)
        ],
        "items": [],
    }


def claim_marks(claims: list[Any], text: str) -> tuple[list[list[Any]], int]:
    """Claims as ``[start, end, verdict, kind, subject, predicate, reason, persons]`` for
    highlighting (``view.js`` words the note), and how many had a span outside `text` (claims
    of another file?), which are left out."""
    out: list[list[Any]] = []
    bad = 0
    size = len(text)
    for c in claims:
        start, end = c.span
        if not 0 <= start < end <= size:
            bad += 1
            continue
        persons = c.persons or ([c.person] if c.person is not None else [])
        out.append([start, end, c.verdict, c.kind, c.subject, c.predicate, c.reason, persons])
    return out, bad
