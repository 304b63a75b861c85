"""Audit reports for regulators: build the report from the log, render it, verify a PDF.

- :func:`build_report` streams the log once into an :class:`AuditReport`;
- :func:`render_report` turns it into HTML, Markdown, JSON or (with WeasyPrint) PDF,
  and :func:`write_pdf_report` prints a PDF with its evidence bundle attached;
- :func:`verify_report` checks a PDF report against the evidence it carries.

Importing this package does not import WeasyPrint; only printing a PDF does.
"""

from __future__ import annotations

from auditml.reports.build import build_report
from auditml.reports.model import AuditReport
from auditml.reports.pdf import write_pdf_report
from auditml.reports.render import FORMATS, render_report
from auditml.reports.verify import ReportCheck, verify_report

__all__ = [
    "FORMATS",
    "AuditReport",
    "ReportCheck",
    "build_report",
    "render_report",
    "verify_report",
    "write_pdf_report",
]
