"""The runtime commands of ``auditml``: trace, runtime stats, check and ingest.

``prove record`` lives with the other proofs, in :mod:`auditml.cli.trust`.

They read the runtime records of docs/format.md section 6 back against the
lifecycle on the log (see :mod:`auditml.serving`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Annotated

import typer

from auditml.cli._common import (
    DbOption,
    JsonOption,
    actor_names,
    app,
    errors,
    group,
    open_log,
    out,
    table,
    utc,
)

runtime_app = group(
    "Runtime records: ingest them from JSON Lines, and statistics and checks per version "
    "and environment."
)
app.add_typer(runtime_app, name="runtime")

RequestArgument = Annotated[
    str, typer.Argument(metavar="REQUEST_ID", help="The request id the server recorded.")
]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


@app.command("trace")
def trace_command(
    request_id: RequestArgument,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a request's record, check its proof, and tell which approved version served it.

    Exit status: 0 when every record of the request is proven, 1 when one is not.
    """
    from auditml.serving import trace

    with errors(), open_log(db) as log:
        found = trace(log, request_id)
        label = actor_names(log)
    if as_json:
        out.print_json(data=found.as_dict())
        if not all(story.proof_ok for story in found.records):
            raise typer.Exit(1)
        return
    for story in found.records:
        rec = story.record
        where = f"record {story.index} of segment event {story.segment_seq}"
        if not story.proof_ok:
            out.print(f"Request {found.request_id!r}: {where}")
            out.print(f"  record       {json.dumps(rec, ensure_ascii=False)}")
            out.print(f"  proof        FAILED: {story.proof_error}")
            out.print("  not traced   the log does not commit to this record: run `auditml verify`")
            continue
        out.print(
            f"Request {found.request_id!r}: {rec['model']} version {rec['version']} in "
            f"{rec['env']} at {utc(str(rec['time']))} UTC, {_ms(rec['latency_ms'])} ms"
            + (f", error {rec['error']}" if rec["error"] is not None else "")
        )
        out.print(f"  output       {json.dumps(rec['output'], ensure_ascii=False)}")
        against = (
            f"the signed checkpoint at size {story.proven_at_size}"
            if story.proven_against == "checkpoint"
            else f"the log's root at size {story.proven_at_size}"
        )
        out.print(f"  proof        OK: {where}, proven against {against}")
        if story.trained_seq is not None:
            by = ", ".join(label(t) for t in story.trained_by) or "unknown"
            out.print(
                f"  trained      {utc(story.trained_at or '')} by {by} (event {story.trained_seq})"
            )
        else:
            out.print("  trained      not on the log")
        for name, ref in story.datasets.items():
            digest = ref.get("sha256")
            shown = f" sha256 {str(digest)[:12]}…" if digest else ""
            out.print(f"  dataset      {name}: {ref.get('uri')}{shown}")
        for a in story.approvals:
            policy = (
                f"policy of event {a['policy_seq']}"
                if a["policy_seq"] is not None
                else "default policy"
            )
            out.print(
                f"  approved     {utc(a['time'])} by {label(str(a['actor']))} under the {policy} "
                f"(event {a['seq']})"
            )
        if not story.approvals:
            out.print("  approved     never, before this request")
        if story.deployed is not None:
            d = story.deployed
            verb = {
                "model.rollback": "rolled back to",
                "rollout.start": "started in a rollout in",
                "rollout.promote": "promoted in",
            }.get(d["action"], "deployed to")
            split = d.get("split") or {}
            share = (
                f", {split[rec['version']]}% of traffic"
                if rec["version"] in split and len(split) > 1
                else ", as a shadow"
                if rec["version"] in (d.get("shadows") or [])
                else ""
            )
            out.print(
                f"  deployed     {verb} {d['environment']} {utc(d['time'])} by "
                f"{label(str(d['actor']))} "
                f"(event {d['seq']}{share})"
            )
        else:
            out.print(f"  deployed     never to {rec['env']}, before this request")
        if not story.deployed_then:
            running = story.running_then or "no version"
            out.print(
                f"  WARNING      version {rec['version']} was not deployed in {rec['env']} at "
                f"that moment ({running} was): see `auditml runtime check`"
            )
        for inc in story.incidents_open:
            out.print(
                f"  incident     {inc['id']} open ({inc['severity']}) on version "
                f"{inc['version']}: {inc['summary']}"
            )
        if not story.incidents_open:
            out.print("  incidents    none open at that moment")
    if not all(story.proof_ok for story in found.records):
        raise typer.Exit(1)


@runtime_app.command("stats")
def stats_command(
    model: Annotated[str | None, typer.Option(metavar="NAME", help="Only this model.")] = None,
    env: Annotated[str | None, typer.Option(metavar="ENV", help="Only this environment.")] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Records at or after TIME (a date or RFC 3339 time)."),
    ] = None,
    until: Annotated[str | None, typer.Option(metavar="TIME", help="Records before TIME.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per version and environment: requests, error rate, latency quantiles and outputs."""
    from auditml.serving import runtime_stats

    with errors(), open_log(db) as log:
        found = runtime_stats(log, model=model, env=env, since=since, until=until)
    if as_json:
        out.print_json(data=[s.as_dict() for s in found])
        return
    if not found:
        out.print("No runtime records match.")
        return
    columns = ("model", "version", "env", "requests", "errors", "p50 ms", "p95 ms", "p99 ms")
    shown = table(*columns, "outputs", overflow="fold")
    for s in found:
        outputs = [
            f"{name}: " + ", ".join(f"{label} {n:,}" for label, n in counts.items())
            for name, counts in s.labels.items()
        ] + [
            f"{name}: p50 {figures['p50']:.3g}, p90 {figures['p90']:.3g}"
            for name, figures in s.scores.items()
            if figures["p50"] is not None and figures["p90"] is not None
        ]
        shown.add_row(
            s.model,
            f"{s.version} (shadow)" if s.shadow else s.version,
            s.env,
            f"{s.requests:,}",
            f"{s.errors:,} ({s.error_rate:.1%})",
            _ms(s.latency_ms["p50"]),
            _ms(s.latency_ms["p95"]),
            _ms(s.latency_ms["p99"]),
            "; ".join(outputs),
        )
    out.print(shown)


@runtime_app.command("check")
def check_command(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Find records of versions not deployed there then, and deployed versions gone quiet.

    A record is a finding when its version was not deployed in its environment
    at its time: never deployed there (never approved, rejected, or approved
    but not deployed there), before its first deployment there, after it was
    rolled back, replaced or retired. A running version is silent when its last
    record since its deployment is older than 10 times its usual gap between
    records, and at least an hour. Exit status: 0 when there are no findings,
    1 when there are.
    """
    from auditml.serving import runtime_check

    with errors(), open_log(db) as log:
        findings = runtime_check(log)
    if as_json:
        out.print_json(data={"ok": not findings, "findings": [f.as_dict() for f in findings]})
    elif not findings:
        out.print("OK: every runtime record was served by a version deployed there at that time.")
    else:
        for f in findings:
            out.print(f"{f.kind}: {f.message}")
            if f.count:
                ids = ", ".join(f.request_ids) + (", …" if f.count > len(f.request_ids) else "")
                out.print(
                    f"  {f.count:,} record(s), {utc(f.first_time or '')} to "
                    f"{utc(f.last_time or '')}: {ids}"
                )
        out.print(f"{len(findings)} finding(s).")
    if findings:
        raise typer.Exit(1)


@runtime_app.command("ingest")
def ingest_command(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help="JSON Lines of records, one object per line ('-' reads standard input).",
        ),
    ],
    model: Annotated[str, typer.Option(metavar="NAME", help="The model that served them.")],
    env: Annotated[str, typer.Option(metavar="ENV", help="The environment they were served in.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Commit runtime records written by a server in another language, as JSON Lines.

    Each line is a JSON object of record()'s arguments: request_id, version and
    latency_ms, and optionally output, error, time (RFC 3339 UTC with
    microseconds and Z; default: now), subject, features, payload and personal
    (values kept off the log, committed to). Every line is checked first: a bad
    line, or a request given twice for one version, is named by its number and
    nothing of the file is written. The records are then committed 1,000 to a
    segment. A record whose request and version the log holds already for this
    model and env is skipped and counted, so ingesting the file again (after a
    process died part-way, or by mistake) records every line exactly once; a
    line that differs from the record on the log is refused.
    """
    with errors():
        source = _open_input(file)
        try:
            with open_log(db) as log:
                done = log.ingest_runtime(model, source, env=env)
        finally:
            if source is not sys.stdin.buffer:
                source.close()
    if as_json:
        out.print_json(data=done.as_dict())
        return
    skipped = f" Skipped {done.skipped:,} record(s) the log holds already." if done.skipped else ""
    if not done.records and done.skipped:
        out.print(
            f"All {done.skipped:,} record(s) of the input are on the log already: nothing was "
            "written."
        )
    elif not done.records:
        out.print("No records in the input: nothing was written.")
    else:
        events = (
            f"event {done.first_seq}"
            if done.first_seq == done.last_seq
            else f"events {done.first_seq} to {done.last_seq}"
        )
        out.print(
            f"Committed {done.records:,} runtime record(s) of {model}/{env} in "
            f"{done.segments:,} segment(s) ({events}).{skipped}"
        )


def _open_input(file: str) -> IO[bytes]:
    """Open FILE to read, or standard input for '-', or raise naming the problem."""
    if file == "-":
        return sys.stdin.buffer
    from auditml.runtime import open_input

    return open_input(Path(file))
