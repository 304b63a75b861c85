"""Rendering a card: HTML, Markdown and PDF from the templates, JSON and the three exports."""

from __future__ import annotations

import json
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any, Literal, get_args

from markupsafe import Markup

from auditml._internal.charts import TimelineMark, metric_chart, timeline_chart
from auditml.cards.export import huggingface_readme, to_cyclonedx, to_mct
from auditml.core.card import SECTION_TITLES, ModelCard
from auditml.errors import InvalidInputError

__all__ = ["FORMATS", "CardFormat", "render_card", "suffix_for"]

CardFormat = Literal["html", "md", "pdf", "json", "mct", "huggingface", "cyclonedx"]
FORMATS: tuple[str, ...] = get_args(CardFormat)
_SUFFIX = {
    "html": ".html",
    "md": ".md",
    "pdf": ".pdf",
    "json": ".json",
    "mct": ".mct.json",
    "huggingface": ".README.md",
    "cyclonedx": ".cdx.json",
}
#: Charts drawn per card at most; further metrics are in the table.
MAX_CHARTS = 8


def auditml_version() -> str:
    """Return the installed auditml version."""
    try:
        return _dist_version("auditml")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0+unknown"


def suffix_for(fmt: str) -> str:
    """Return the file name ending a card in ``fmt`` is written with."""
    return _SUFFIX[fmt]


def _charts(card: ModelCard) -> tuple[list[Markup], int]:
    """Draw one chart per metric that has values for two or more versions."""
    drawable = [
        (name, series)
        for name, series in card.metric_history.items()
        if sum(v is not None for _, v in series) >= 2
    ]
    charts = [
        metric_chart({name: series}, title=f"{name} by version", width=420, height=200)
        for name, series in drawable[:MAX_CHARTS]
    ]
    return charts, max(0, len(drawable) - MAX_CHARTS)


def _timeline(card: ModelCard) -> Markup | None:
    lanes: dict[str, list[TimelineMark]] = {}
    for move in card.deployments:
        moment = datetime.fromisoformat(move.time.replace("Z", "+00:00"))
        lanes.setdefault(move.environment, []).append(
            TimelineMark(
                moment,
                move.version,
                "deploy" if move.action == "deploy" else "rollback",
                move.seq,
            )
        )
    return timeline_chart(lanes) if lanes else None


def _context(card: ModelCard) -> dict[str, Any]:
    charts, more = _charts(card)
    approvals = [d for d in card.decisions if d.action == "approve"]
    owners = card.sections.owners or []
    return {
        "card": card,
        "titles": SECTION_TITLES,
        "charts": charts,
        "more_charts": more,
        "timeline": _timeline(card),
        "approvals": len(approvals),
        "signed": sum(d.signature is not None for d in approvals),
        "imported_approvals": sum(d.imported for d in approvals),
        "running": ", ".join(sorted(card.running_in)),
        "authors": ", ".join(o.name for o in owners) or "auditml",
        "auditml_version": auditml_version(),
    }


def render_card(card: ModelCard, fmt: str, *, templates: Path | None = None) -> bytes:
    """Return the card in ``fmt`` (one of FORMATS) as bytes; ``templates`` overrides ours."""
    from auditml._internal.templates import packaged_templates, template_env

    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown card format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "json":
        return _json(card.as_json())
    if fmt == "mct":
        return _json(to_mct(card))
    if fmt == "cyclonedx":
        return _json(to_cyclonedx(card, tool_version=auditml_version()))
    if fmt in ("md", "huggingface"):
        body = template_env(templates, markdown=True).get_template("card.md.j2")
        text = body.render(_context(card))
        return (huggingface_readme(card, text) if fmt == "huggingface" else text).encode()
    html = template_env(templates).get_template("card.html.j2").render(_context(card))
    if fmt == "html":
        return html.encode()
    from auditml._internal.pdf import html_to_pdf

    return html_to_pdf(html, base_url=templates or packaged_templates())


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()
