"""The ``auditml report`` command: an audit report for regulators, as PDF, HTML, Markdown or JSON.

While a long report builds, a progress bar runs on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditml.cli._common import DbOption, ForceOption, LazyProgress, app, errors, open_log, out
from auditml.errors import InvalidInputError

__all__ = ["report"]


@app.command()
def report(
    out_file: Annotated[
        Path,
        typer.Option("--out", metavar="FILE", help="Where to write the report, e.g. report.pdf."),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", metavar="MODEL", help="Report on this model (repeatable) [default: all]."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Decisions from this UTC date or time on (ISO 8601)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Decisions before this UTC date or time (ISO 8601)."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="pdf, html, md or json [default: from the --out suffix, else pdf].",
            show_default=False,
        ),
    ] = None,
    paper: Annotated[
        str, typer.Option(metavar="SIZE", help="Paper size of a PDF: a4 or letter.")
    ] = "a4",
    templates: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="A folder of templates that override auditml's (report.html.j2, "
            "report.md.j2, report.css).",
        ),
    ] = None,
    force: ForceOption = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="Without the log key, report only up to the latest signed checkpoint "
            "(the report says so) instead of refusing.",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Write the audit report: decisions, signatures, incidents, and the proof they are intact."""
    from auditml._internal.output import check_output, write_output
    from auditml.reports.build import build_report
    from auditml.reports.render import FORMATS, PAPERS, render_report

    with errors():
        suffix = out_file.suffix.lower().lstrip(".")
        chosen = (fmt or {"htm": "html", "markdown": "md"}.get(suffix, suffix) or "pdf").lower()
        if chosen not in FORMATS:
            if fmt is None:
                chosen = "pdf"
            else:
                raise InvalidInputError(
                    f"--format {fmt!r} is not a report format: use one of {', '.join(FORMATS)}"
                )
        if paper.lower() not in PAPERS:
            raise InvalidInputError(f"--paper {paper!r} is not a paper size: use a4 or letter")
        if templates is not None:
            from auditml._internal.templates import check_templates

            check_templates(templates)
        target = out_file.expanduser()
        if target.is_dir() or not target.parent.is_dir():
            where = "is a folder" if target.is_dir() else f"needs the folder {target.parent}"
            raise InvalidInputError(
                f"--out {target} {where}; give a file in an existing folder, e.g. report.pdf"
            )
        with open_log(db) as log:
            protect = log._own_files()
            check_output(target, force=force, protect=protect)  # before the slow build
            if chosen == "pdf":
                from auditml.reports.pdf import seal_signer

                seal_signer(log)  # a PDF is sealed with the log key: refuse before the build
            progress = LazyProgress("building report")
            try:
                built = build_report(
                    log,
                    models=model or (),
                    since=since,
                    until=until,
                    progress=progress,
                    allow_partial=allow_partial,
                )
            finally:
                progress.stop()
            if chosen == "pdf":
                from auditml.reports.pdf import write_pdf_report

                write_pdf_report(log, built, target, paper=paper, templates=templates, force=force)
            else:
                data = render_report(built, chosen, templates=templates)
                write_output(target, data, force=force, protect=protect)
        out.print(
            f"Wrote {chosen.upper()} report {built.report_id} to {target}: "
            f"{len(built.models)} model(s), {len(built.changes):,} decision(s), "
            f"checkpoint at size {built.checkpoint.size:,}"
        )
        if built.partial is not None:
            p = built.partial
            out.print(
                f"PARTIAL: the report covers events up to the checkpoint at size "
                f"{p.checkpoint_size:,} only; the {p.left_out:,} later event(s) up to size "
                f"{p.head_size:,} are left out, because {p.reason}"
            )
        if chosen == "pdf":
            out.print(f"Check it with: auditml verify {target}")
