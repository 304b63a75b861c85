"""The personal-data commands of ``auditml``: erase a subject, the retention schedule.

``erase`` removes one data subject's values kept off the log and records one
``privacy.erasure`` event; ``retention show`` reads the policy's
``[retention]`` and the log's erasure and retention events (see
:mod:`auditml.privacy`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from auditml.cli._common import (
    EXIT_FAILED,
    ActorOption,
    DbOption,
    JsonOption,
    actor_names,
    app,
    err,
    errors,
    group,
    notice,
    open_log,
    out,
    table,
    utc,
    who,
)
from auditml.errors import InvalidInputError, VerificationError

if TYPE_CHECKING:
    from auditml.core.privacy import Due, RetentionStatus
    from auditml.privacy import ActorErasure

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
    from auditml.ledger import to_timestamp

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


def _print_status(status: RetentionStatus, label: Callable[[str], str]) -> None:
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
        removed.add_row(str(e.seq), utc(e.time), e.what, label(e.actor), e.summary())
    out.print(removed)


@retention_app.command("show")
def show_command(at: AtOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the retention schedule, what falls due next, and what has been removed."""
    with errors(), open_log(db) as log:
        status = log.retention(_moment(at))
        label = actor_names(log)
    if as_json:
        out.print_json(data=status.as_dict())
        return
    _print_status(status, label)


@app.command("erase")
def erase_command(
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject",
            metavar="ID",
            help="The data subject's identifier, as the server recorded it (never logged).",
        ),
    ] = None,
    erase_actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            metavar="ID",
            help="Erase this person's identity (the id they acted under, e.g. an e-mail) from "
            "the off-log actor directory, leaving their pseudonym (never logged).",
        ),
    ] = None,
    request: Annotated[
        str | None,
        typer.Option("--request", metavar="REF", help="The erasure request's reference."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", metavar="TEXT", help="Why.")] = None,
    basis: Annotated[
        str | None,
        typer.Option("--basis", metavar="TEXT", help="The legal basis, e.g. 'GDPR Art. 17(1)(a)'."),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--by",
            metavar="ID",
            help="Who erases [default: $AUDITML_ACTOR, else git user.email, else the OS user] "
            "(--actor names whose identity to erase).",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Erase a data subject's values (--subject) or an actor's identity (--actor), off the log."""
    with errors():
        if subject is not None and erase_actor is not None:
            raise InvalidInputError(
                "give --subject or --actor, not both: --actor names a person whose identity "
                "to erase; who erases is --by ID (or $AUDITML_ACTOR)"
            )
        if subject is None and erase_actor is None:
            raise InvalidInputError(
                "say what to erase: --subject ID (a data subject's values) or --actor ID (a "
                "person's identity in the actor directory)"
            )
        if request is None or reason is None:
            missing = "--request" if request is None else "--reason"
            raise InvalidInputError(
                f"an erasure needs {missing}: the request's reference (e.g. --request "
                "DSR-2027-14) and why (e.g. --reason 'GDPR Art. 17 request'); nothing was erased"
            )
        if erase_actor is not None:
            with open_log(db) as log:
                gone = log.erase_actor(
                    erase_actor, request=request, reason=reason, basis=basis, actor=who(actor)
                )
            _print_actor_erasure(gone, as_json)
            return
        assert subject is not None
        with open_log(db) as log:
            done = log.erase(subject, request=request, reason=reason, basis=basis, actor=who(actor))
    if as_json:
        out.print_json(data=done.as_dict())
        return
    kinds = ", ".join(f"{n} {k}" for k, n in done.kinds.items()) or "none"
    if done.values:
        out.print(
            f"Erased {done.values:,} value(s) ({kinds}) of {done.records:,} record(s) under "
            f"request {done.request} (event {done.seq})."
        )
    else:
        out.print(
            f"Nothing was erased: no value is kept for that subject. The request "
            f"{done.request} is recorded as handled with nothing to erase (event {done.seq})."
        )
        out.print(
            "If the subject should have data here, check the identifier: it must be written "
            "exactly as the serving code recorded it (case, spaces and leading zeros count)."
        )
        return
    out.print(
        "The subject's identifier is not on the log: the event holds only counts, kinds and "
        "the request. The records and their commitments stay, so every hash and proof still "
        "verifies; the erased values and salts can no longer be opened."
    )
    out.print(f"Store: {done.scrubbed}.")


def _print_actor_erasure(gone: ActorErasure, as_json: bool) -> None:
    if as_json:
        out.print_json(data=gone.as_dict())
        return
    out.print(
        f"Erased the identity behind {gone.pseudonym} from the actor directory under request "
        f"{gone.request} (event {gone.seq}): auditml keeps its id and printed name nowhere off "
        "the log now, and displays show the pseudonym. The event names the pseudonym, never "
        "the id."
    )
    out.print("What stays on the log, because it is hashed into the chain:")
    for line in gone.stays():
        out.print(f"  - {line}")
    out.print(f"Store: {gone.scrubbed}.")


@app.command("actors")
def actors_command(
    db: DbOption = None,
    as_json: JsonOption = False,
    enroll_existing: Annotated[
        bool,
        typer.Option(
            "--enroll-existing",
            help="Once, after upgrading: bind the rows of people who acted under a pseudonym "
            "before auditml enrolled pseudonyms on the log.",
        ),
    ] = False,
) -> None:
    """List the off-log actor directory: who acts under each pseudonym, and who was erased."""
    with errors(), open_log(db) as log:
        if enroll_existing:
            enrolled = log.enroll_existing_actors()
            said = (
                f"Enrolled {len(enrolled)} pseudonym(s) made before enrollments: "
                + (", ".join(enrolled) or "none was left to enroll")
                + "."
            )
            if as_json:
                notice("note", said)  # a JSON line, as every line on stderr with --json
            else:
                err.print(said)
        entries = list(log.actors().values())
        problems = log.actor_problems()
    after = (
        "Decisions are refused until the directory is restored from a backup; "
        "`auditml verify --deep` names the first row."
    )
    for problem in [] if as_json else problems:  # the rows that do not bind are not listed
        err.print(f"FAILED: {problem}")
    if problems and not as_json:
        err.print(after)
    if as_json:
        out.print_json(
            data=[
                {"pseudonym": e.pseudonym, "id": e.known_as, "name": e.name, "erased": e.erased}
                for e in entries
            ]
        )
    elif not entries and not problems:
        out.print(
            "The actor directory is empty: no one has acted under a pseudonym "
            "([personal_data] pseudonymous_actors = true turns it on)."
        )
    elif entries:
        shown = table("pseudonym", "id", "printed name", "erased", overflow="fold")
        for e in entries:
            shown.add_row(
                e.pseudonym,
                e.known_as or "-",
                e.name or "-",
                "-" if e.erased is None else f"event {e.erased}",
            )
        out.print(shown)
    if problems and as_json:  # one JSON error on stderr, as every --json failure
        with errors():
            raise VerificationError(f"{'; '.join(problems)}. {after}", kind="directory")
    if problems:
        raise typer.Exit(EXIT_FAILED)


@retention_app.command("apply")
def apply_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
    at: AtOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove the values and records whose retention has expired, and record what went."""
    with errors(), open_log(db) as log:
        run = log.apply_retention(now=_moment(at), dry_run=dry_run, actor=who(actor))
    if as_json:
        out.print_json(data=run.as_dict())
        return
    plan = run.plan
    if run.dry_run and not (plan.values or plan.segments):
        out.print(f"Nothing is due as of {utc(plan.as_of)} UTC (dry run, nothing recorded).")
    elif not (plan.values or plan.segments):
        out.print(
            f"Nothing is due as of {utc(plan.as_of)} UTC; the run is recorded (event {run.seq})."
        )
    elif run.dry_run:
        out.print(
            f"Due as of {utc(plan.as_of)} UTC (dry run, nothing removed): {plan.value_count:,} "
            f"value(s) in {len(plan.values):,} group(s), {plan.record_count:,} record(s) of "
            f"{len(plan.segments):,} segment(s)."
        )
        for d in [*plan.values, *plan.segments]:
            out.print(f"  {_item(d)}, due {utc(d.due_at)} ({d.rule})")
    else:
        kinds = ", ".join(f"{n:,} {k}" for k, n in run.kinds.items()) or "none"
        out.print(
            f"Removed {run.values:,} value(s) ({kinds}) and {run.records:,} record(s) of "
            f"{len(run.segments):,} segment(s) (event {run.seq}). The segment events stay, so "
            "the chain still verifies."
        )
        out.print(f"Store: {run.scrubbed}.")
    if plan.held:
        out.print(
            f"Held: {len(plan.held):,} due item(s) kept by an open incident: "
            "see `auditml retention show`."
        )
