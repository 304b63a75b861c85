"""Render an :class:`AuditReport` as HTML, Markdown or JSON from Jinja2 templates.

Templates are looked up in the user's ``--templates`` folder first, then in
the ones auditml ships (``auditml/templates`` inside the wheel, ``templates/``
in a source checkout): ``report.html.j2``, ``report.md.j2`` and ``report.css``.
HTML autoescapes every value and Markdown escapes every value for Markdown, so
text from the log (a model name, a reason) is shown as written, never run.
A PDF is the HTML printed through the WeasyPrint edge (``_internal.pdf``) with
the evidence bundle attached (:func:`html_to_pdf`); :mod:`auditml.reports.pdf`
builds on this module to export the bundle and write the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, TemplateError
from markupsafe import Markup

from auditml._internal.charts import TimelineMark, metric_chart, timeline_chart
from auditml._internal.pdf import Attachment
from auditml._internal.pdf import html_to_pdf as pdf_bytes
from auditml._internal.templates import packaged_templates, template_env
from auditml.core.card_sections import SECTION_TITLES
from auditml.core.pdfseal import placeholder
from auditml.errors import InvalidInputError
from auditml.reports.build import section_text
from auditml.reports.model import (
    BUNDLE_NAME,
    NO_EVIDENCE,
    REPORT_JSON,
    SEAL_NAME,
    SECTIONS,
    AuditReport,
)

__all__ = [
    "FORMATS",
    "PAPERS",
    "html_to_pdf",
    "render_html",
    "render_report",
]

FORMATS = ("html", "pdf", "md", "json")
PAPERS = {"a4": "A4", "letter": "letter"}
Format = Literal["html", "pdf", "md", "json"]


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _charts(report: AuditReport) -> dict[str, dict[str, Markup]]:
    """Return each model's deployment timeline and metrics chart, as inline SVG."""
    charts: dict[str, dict[str, Markup]] = {}
    for model in report.models:
        lanes: dict[str, list[TimelineMark]] = {}
        for point in report.timeline:
            if point.model == model and point.kind != "retire":
                lanes.setdefault(point.environment, []).append(
                    TimelineMark(_parse(point.time), point.version, point.kind, point.seq)  # type: ignore[arg-type]
                )
        series = report.metric_series.get(model, {})
        charts[model] = {
            "timeline": timeline_chart(lanes, width=680) if lanes else Markup(""),
            "metrics": Markup("").join(
                metric_chart(group, title=title, width=680)
                for title, group in _metric_groups(model, series)
            ),
        }
    return charts


def _metric_groups(
    model: str, series: Mapping[str, Sequence[tuple[str, float | None]]]
) -> list[tuple[str, Mapping[str, Sequence[tuple[str, float | None]]]]]:
    """Split metrics into charts of one scale: scores within [-1.5, 1.5] together, others alone."""
    scores = {
        name: points
        for name, points in series.items()
        if all(v is None or abs(v) <= 1.5 for _, v in points)
    }
    groups: list[tuple[str, Mapping[str, Sequence[tuple[str, float | None]]]]] = []
    if scores:
        groups.append((f"Metrics across versions: {model}", scores))
    for name, points in series.items():
        if name not in scores and len(groups) < 4:
            groups.append((f"{name} across versions: {model}", {name: points}))
    return groups


def _context(report: AuditReport, paper: str, *, charts: bool) -> dict[str, Any]:
    numbers = {key: f"{i}" for i, (key, _) in enumerate(SECTIONS, start=1)}
    return {
        "r": report,
        "sections": SECTIONS,
        "titles": dict(SECTIONS),
        "section_titles": SECTION_TITLES,
        "numbers": numbers,
        "no_evidence": NO_EVIDENCE,
        "paper": PAPERS.get(paper.lower(), "A4"),
        "charts": _charts(report) if charts else {},
        "section_text": section_text,
    }


def _render(env: Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(**context)
    except TemplateError as exc:
        raise InvalidInputError(f"the report template {name} failed: {exc}") from None


def render_html(
    report: AuditReport,
    *,
    templates: Path | None = None,
    paper: str = "a4",
    css: bool = True,
    for_pdf: bool = False,
) -> str:
    """Return the report as one self-contained HTML page (inline CSS and SVG charts).

    ``for_pdf`` says the page becomes a PDF that carries the evidence bundle; an
    HTML report carries none, and says where the evidence is instead.
    """
    env = template_env(templates)
    context = _context(report, paper, charts=True)
    context["for_pdf"] = for_pdf
    context["css"] = Markup(_render(env, "report.css", {})) if css else Markup("")
    return _render(env, "report.html.j2", context)


def render_report(
    report: AuditReport,
    fmt: str = "html",
    *,
    templates: Path | None = None,
    paper: str = "a4",
    bundle: Path | None = None,
) -> bytes:
    """Return the report in ``fmt`` (html, md, json or pdf) as bytes.

    A PDF carries the evidence bundle at ``bundle`` (docs/format.md section 5) as
    an attachment, but no seal: it needs the log key, so
    :func:`auditml.reports.pdf.write_pdf_report` makes the PDF that verifies.
    """
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    if paper.lower() not in PAPERS:
        raise InvalidInputError(f"unknown paper size {paper!r}: use a4 or letter")
    if fmt == "json":
        return (report.model_dump_json(indent=2) + "\n").encode()
    if fmt == "md":
        env = template_env(templates, markdown=True)
        return _render(env, "report.md.j2", _context(report, paper, charts=False)).encode()
    html = render_html(report, templates=templates, paper=paper, for_pdf=fmt == "pdf")
    if fmt == "html":
        return html.encode()
    if bundle is None:
        raise InvalidInputError("a PDF report carries its evidence bundle: pass bundle=PATH")
    return html_to_pdf(html, report, bundle=bundle)


def html_to_pdf(html: str, report: AuditReport, *, bundle: Path, sealable: bool = False) -> bytes:
    """Return the PDF/A-3b bytes of the report's ``html``, with ``bundle`` embedded.

    ``sealable`` also embeds the blank seal placeholder, uncompressed, for
    :func:`auditml.core.pdfseal.seal_bytes` to fill in.
    """
    try:
        data = Path(bundle).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the evidence bundle {bundle}: {exc}") from None
    attachments = [
        Attachment(
            name=BUNDLE_NAME,
            data=data,
            description=(
                f"Evidence bundle (auditml docs/format.md section 5) of log {report.origin}, "
                f"{report.checkpoint.size} events, root {report.checkpoint.root}"
            ),
            relationship="Source",
        ),
        Attachment(
            name=REPORT_JSON,
            data=report.model_dump_json(indent=2).encode(),
            description="This report's content as JSON",
        ),
    ]
    if sealable:
        attachments.append(
            Attachment(
                name=SEAL_NAME,
                data=placeholder(),
                description=(
                    "Seal: the SHA-256 of every other byte of this file, signed with the key "
                    f"of log {report.origin}"
                ),
                relationship="Supplement",
                compress=False,
                mime="text/plain",
            )
        )
    return pdf_bytes(
        html,
        base_url=packaged_templates(),
        attachments=attachments,
        variant="pdf/a-3b",
        custom_metadata=True,
    )
