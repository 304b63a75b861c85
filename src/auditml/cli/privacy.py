"""The personal-data commands of ``auditml``: the retention schedule and what it removed.

They read the policy's ``[retention]`` and the log's ``privacy.erasure`` and
``retention.applied`` events (see :mod:`auditml.privacy`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from auditml.cli._common import DbOption, JsonOption, app, errors, group, open_log, out, table, utc
from auditml.core.privacy import Due, RetentionStatus
from auditml.errors import InvalidInputError
from auditml.ledger import to_timestamp

retention_app = group("The retention schedule: what is kept how long, what falls due, what went.")
app.add_typer(retention_app, name="retention")

AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="Plan as of TIME (a date or RFC 3339 time) instead of now.",
    ),
]


def _moment(at: str | None) -> datetime | None:
    """Return the moment ``--at`` names, or None for now."""
    if at is None:
        return None
    stamp = to_timestamp(at)
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInputError(f"--at {at!r} is not a date or RFC 3339 time") from None


def _item(d: Due) -> str:
    what = f"{d.name} values" if d.kind == "runtime_values" else "records"
    return f"{d.count:,} {what} of segment {d.seg} ({d.stream})"


def _print_status(status: RetentionStatus) -> None:
    where = (
        f"policy of event {status.policy_seq}"
        if status.policy_seq is not None
        else "the default policy: no [retention] recorded, everything is kept"
    )
    out.print(f"Retention schedule ({where}):")
    shown = table("data", "kept for", "legal minimum", "basis", overflow="fold")
    for row in status.schedule:
        basis = row.basis or ""
        if row.shorter_because:
            basis = f"{basis}; shorter because: {row.shorter_because}".lstrip("; ")
        shown.add_row(row.kind, row.kept, row.minimum or "-", basis)
    out.print(shown)
    plan = status.plan
    out.print(f"As of {utc(plan.as_of)} UTC:")
    if plan.values or plan.segments:
        out.print(
            f"  due now      {plan.value_count:,} value(s) in {len(plan.values):,} group(s), "
            f"{plan.record_count:,} record(s) of {len(plan.segments):,} segment(s): "
            "run `auditml retention apply`"
        )
    else:
        out.print("  due now      nothing")
    held: dict[str, list[Due]] = {}
    for d in plan.held:
        held.setdefault(d.held or "", []).append(d)
    for reason, items in held.items():
        values = sum(d.count for d in items if d.kind == "runtime_values")
        records = sum(d.count for d in items if d.kind == "runtime_records")
        segments = len({d.seg for d in items})
        out.print(
            f"  held         {values:,} value(s) and {records:,} record(s) of {segments:,} "
            f"segment(s), due but kept: {reason}"
        )
    for d in plan.upcoming:
        out.print(f"  next         {_item(d)} at {utc(d.due_at)} ({d.rule})")
    if plan.events_due_at is not None:
        out.print(
            f"  events       the oldest passes its period at {utc(plan.events_due_at)}; events "
            "are never removed one by one (the chain needs every one)"
        )
    if not status.entries:
        out.print("Removed: nothing yet (no erasure or retention run on the log).")
        return
    out.print("Removed:")
    removed = table("event", "time (UTC)", "what", "by", "summary", overflow="fold")
    for e in status.entries:
        removed.add_row(str(e.seq), utc(e.time), e.what, e.actor, e.summary())
    out.print(removed)


@retention_app.command("show")
def show_command(at: AtOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the retention schedule, what falls due next, and what has been removed."""
    with errors(), open_log(db) as log:
        status = log.retention(_moment(at))
    if as_json:
        out.print_json(data=status.as_dict())
        return
    _print_status(status)
