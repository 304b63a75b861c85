"""The log commands of ``auditml``: init, head, log and verify.

``verify`` checks the log in its database, or offline an evidence bundle or a
PDF report with the evidence it carries.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import asdict
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from auditml.cli._common import (
    DbOption,
    JsonOption,
    LazyProgress,
    actor_names,
    app,
    ask_passphrase,
    err,
    errors,
    note_imported,
    notice,
    open_log,
    out,
    print_error,
    table,
    utc,
)
from auditml.core.events import imported_source, is_imported
from auditml.core.text import escape_controls
from auditml.errors import AuditmlError, InvalidInputError, VerificationError

if TYPE_CHECKING:
    from auditml.log import AuditLog


@app.command()
def init(
    origin: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The log's origin name, e.g. bank.example/credit-models "
            "[default: <host>/<folder>]",
            show_default=False,
        ),
    ] = None,
    description: Annotated[
        str | None, typer.Option(metavar="TEXT", help="What this log is for.")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(metavar="ID", help="Who is creating the log.")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="The log's signing key [default: $AUDITML_LOG_KEY, else NAME.key beside a "
            "SQLite file NAME.db, else ./.auditml/ORIGIN.key]; created when missing.",
            show_default=False,
        ),
    ] = None,
    ask: Annotated[
        bool,
        typer.Option(
            "--ask-passphrase",
            help="Encrypt a new log key with a passphrase asked for here "
            "(or set $AUDITML_KEY_PASSPHRASE).",
        ),
    ] = False,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Sign a checkpoint every N events [default: 1000; 0: only by hand].",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create the log and its signing key here and say where they are; safe to run again."""
    from auditml._internal.keyfiles import passphrase_from_env
    from auditml.log import AuditLog

    with errors():
        phrase = passphrase_from_env()
        if ask and phrase is None:
            phrase = ask_passphrase("the new log key", confirm=True)
        started = time.time()
        log, created = AuditLog.init(
            db,
            origin=origin,
            actor=actor,
            description=description,
            key=key,
            passphrase=phrase,
            checkpoint_every=checkpoint_every,
        )
        with log:
            head = log.head()
            vkey = log.verifier_key()
            if as_json:
                out.print_json(
                    data={
                        "created": created,
                        "origin": log.origin,
                        "url": log.url,
                        "size": head.size,
                        "root": head.root,
                        "vkey": str(vkey),
                        "key_file": str(log.key_path()),
                    }
                )
                return
            key_file = log.key_path()
            implicit = key is None and not os.environ.get("AUDITML_LOG_KEY", "").strip()
            with contextlib.suppress(OSError):
                if created and implicit and key_file.stat().st_mtime < started:
                    notice(
                        "warning",
                        f"the new log signs with the key file that was already at {key_file}: "
                        "if another log (another database of that name) uses it, both share "
                        "one signing key. To give this log its own, delete its database and "
                        "init again with --key NEW.key",
                    )
            verb = "Created" if created else "Already initialised:"
            out.print(f"{verb} log {log.origin!r} at {log.url}")
            out.print(f"{head.size} event(s), root {head.root}")
            out.print(f"signing key {log.key_path()}; verifier key (give it to auditors):")
            out.print(f"  {vkey}")


@app.command("head")
def head_cmd(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the log's origin, size, Merkle root and last event."""
    with errors(), open_log(db) as log:
        head = log.head()
        if as_json:
            out.print_json(data={"url": log.url, **asdict(head)})
            return
        out.print(f"origin     {head.origin}")
        out.print(f"store      {log.url}")
        out.print(f"size       {head.size}")
        out.print(f"root       {head.root}")
        out.print(f"last hash  {head.last_hash}")
        out.print(f"last time  {head.last_time}")


def _subject(subject: dict[str, str]) -> str:
    model = subject.get("model")
    if model is None:
        return ", ".join(f"{k}={v}" for k, v in subject.items())
    version = subject.get("version")
    rest = {k: v for k, v in subject.items() if k not in {"model", "version"}}
    text = model if version is None else f"{model} v{version}"
    return text + "".join(f", {k}={v}" for k, v in rest.items())


def _why_none(log: AuditLog, model: str | None) -> str:
    """Return a hint for a model filter that can match nothing (a model never trained), or ""."""
    if model is None:
        return ""
    trained = {r.event.subject.get("model") for r in log.events(action=["model.train"])}
    known = sorted(name for name in trained if isinstance(name, str) and name)
    if model in known:
        return ""
    close = get_close_matches(model, known, n=1)
    if close:
        return f": the log has no model {model!r}; did you mean {close[0]!r}?"
    names = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
    return f": the log has no model {model!r} (its models: {names or 'none yet'})"


@app.command("log")
def log_cmd(
    model: Annotated[
        str | None, typer.Option(metavar="MODEL", help="Only events about this model.")
    ] = None,
    version: Annotated[
        str | None, typer.Option(metavar="VERSION", help="Only events about this version.")
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option(metavar="ACTION", help="Only this action, e.g. model.deploy (repeatable)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="From this UTC date or time on (ISO 8601, inclusive)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Before this UTC date or time (ISO 8601, exclusive)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=0, metavar="N", help="At most this many events.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List events, oldest first, filtered by model, action and time."""
    with errors(), open_log(db) as log:
        records = log.events(
            model=model, version=version, action=action, since=since, until=until, limit=limit
        )
        if as_json:
            # The filters are checked when the first event is read: a bad --since is
            # an error before "[" is written, so stdout holds no half of a JSON array.
            rest = iter(records)
            first = next(rest, None)
            write = sys.stdout.write
            write("[")
            for i, rec in enumerate(() if first is None else itertools.chain([first], rest)):
                item = {
                    "seq": rec.seq,
                    "hash": rec.hash,
                    "imported": is_imported(rec.event.data),
                    "event": json.loads(rec.body),
                }
                line = json.dumps(item, ensure_ascii=False)
                write(("," if i else "") + "\n  " + escape_controls(line))
            write("\n]\n")
            return
        rows, imported = [], 0
        name = actor_names(log)
        for rec in records:
            ev = rec.event
            source = imported_source(ev.data)
            rows.append(
                (
                    str(rec.seq),
                    utc(ev.time),
                    name(ev.actor.id),
                    ev.action,
                    _subject(ev.subject),
                    "" if source is None else source,
                    rec.hash[:12],
                )
            )
            imported += source is not None
        if not rows:
            err.print("no events match" + _why_none(log, model))
            return
        # The imported column appears only when some event shown was imported.
        names = ("seq", "time (UTC)", "actor", "action", "subject", "imported", "hash")
        keep = [i for i, name in enumerate(names) if name != "imported" or imported]
        shown = table()
        for i in keep:
            shown.add_column(names[i], no_wrap=names[i] != "subject", overflow="fold")
        for row in rows:
            shown.add_row(*(row[i] for i in keep))
        out.print(shown)
        if imported:
            note_imported(f"{imported} event(s) marked imported")


@app.command()
def verify(
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="PATH",
            help="A PDF report (*.pdf) or an evidence bundle to verify offline, with no database.",
            show_default=False,
        ),
    ] = None,
    deep: Annotated[
        bool, typer.Option(help="Also re-canonicalize and schema-check every event (slower).")
    ] = False,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="FILE",
            help="An anchored checkpoint the log must still extend (repeatable).",
        ),
    ] = None,
    vkey: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="Pin the verifier key (text or a file) that anchors and bundles must be "
            "signed with.",
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Verify an evidence bundle offline, with no database."),
    ] = None,
    record: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Verify a record proof (`auditml prove record`) offline, against one "
            "--checkpoint opened with --vkey.",
        ),
    ] = None,
    no_runtime: Annotated[
        bool,
        typer.Option(
            "--no-runtime", help="Skip checking the runtime records against their segments."
        ),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check every hash, link, signature, the root and anchors; exit 1 on any failure.

    Given a PATH, verify that instead of the database: a PDF report with the
    evidence it carries, or an evidence bundle (folder or zip). With --record,
    verify a runtime record proof offline against a signed checkpoint.
    """
    from auditml.log import AuditLog

    if record is not None:
        _verify_record(record, checkpoint or [], vkey, as_json)
        return
    if path is not None and path.suffix.lower() == ".pdf":
        with _offline(as_json):
            pinned_key = _read_vkey(vkey)
        _verify_report(path, pinned_key, as_json)
        return
    if path is not None and path.suffix.lower() in {".html", ".htm", ".md", ".json"}:
        with errors():
            raise InvalidInputError(
                f"{path} is a report in {path.suffix.lower()[1:]}, which carries no evidence "
                "of its own: verify the PDF of the report, or a bundle written by "
                "`auditml export`, or the log itself with `auditml verify --db URL`"
            )
    if path is not None and bundle is None:
        bundle = path
    if bundle is not None:
        with _offline(as_json):
            pinned_key = _read_vkey(vkey)
        _verify_bundle(bundle, pinned_key, as_json)
        return
    progress = LazyProgress("verifying")
    opened: list[AuditLog] = []  # the log once it is open: a JSON failure names its origin

    def explain(exc: AuditmlError) -> None:
        if as_json and isinstance(exc, VerificationError):
            origin = opened[0].origin if opened else None
            out.print_json(
                data={
                    "ok": False,
                    "origin": origin,
                    "kind": exc.kind,
                    "seq": exc.seq,
                    "error": str(exc),
                }
            )
            print_error(exc)  # and on stderr, as every error with --json
        elif as_json:
            out.print_json(data={"ok": False, "error": exc.diagnostics()})
            print_error(exc)
        else:
            print_error(exc)
            if isinstance(exc, VerificationError) and str(exc).startswith("the pinned key is for"):
                err.print("Check which log the key belongs to before treating this one as changed.")
            elif isinstance(exc, VerificationError):
                err.print(
                    "The log has been changed outside auditml. Keep this store as evidence and "
                    "compare it with a backup or an exported checkpoint.",
                )

    with errors(explain):
        try:
            anchors = [_read_anchor(path) for path in checkpoint or ()]
            pinned = _read_vkey(vkey)
            opened.append(AuditLog.open(db))  # a head row that lies fails here, as a verification
            with opened[0] as log:
                report = log.verify(
                    deep=deep,
                    progress=progress,
                    checkpoints=anchors,
                    vkey=pinned,
                    runtime=not no_runtime,
                )
        finally:
            progress.stop()
    if as_json:
        out.print_json(data=report.as_dict())
        return
    speed = ""
    if report.size >= 10_000 and report.seconds > 0:
        speed = f" ({report.size / report.seconds:,.0f} events/s)"
    out.print(
        f"OK: log {report.origin!r} is intact: {report.size:,} events verified "
        f"in {report.seconds:.2f}s{speed}"
    )
    out.print(f"root {report.root}")
    if report.deep:
        values = (
            ", the values kept off the log against their commitments"
            if report.records is not None
            else ""
        )
        out.print(
            "deep: every event re-canonicalized and checked against its action's schema"
            f"{values}, and each actor directory row against its enrollment"
        )
    if report.records:
        out.print(f"{report.records:,} runtime record(s) verified against their segments' roots")
    elif report.records is None:
        out.print("runtime records not checked (--no-runtime)")
    if report.signatures:
        out.print(f"{report.signatures} e-signature(s) verified against the registered keys")
    if report.checkpoint is not None:
        out.print(f"the log's latest signed checkpoint (size {report.checkpoint}) holds")
    if report.removed_segments:
        out.print(
            f"{report.removed_segments} segment(s) of runtime records were removed under "
            "retention (their events stay): see `auditml retention show`"
        )
    for size in report.anchors:
        out.print(f"the log extends the anchored checkpoint at size {size}")
    if report.vkey is not None and vkey is None:
        # A whole log rewritten and re-signed with another key verifies against itself:
        # only a key held elsewhere tells them apart.
        out.print(f"log key {report.vkey}: compare it with yours, or pin it with --vkey")


def _offline(as_json: bool) -> AbstractContextManager[None]:
    """Report an offline check's failure (as JSON too) with exit 1, other errors as usual."""

    def explain(exc: AuditmlError) -> None:
        if as_json and isinstance(exc, VerificationError):
            out.print_json(data={"ok": False, "kind": exc.kind, "error": str(exc)})
        print_error(exc)  # with --json, one JSON object on stderr

    return errors(explain)


def _signed_by(found: str, pinned: str | None) -> None:
    out.print(f"signed by {found}" + ("" if pinned else " (pin it with --vkey)"))


def _verify_bundle(path: Path, vkey: str | None, as_json: bool) -> None:
    """Verify an evidence bundle offline and report like ``verify`` does."""
    from auditml.bundle import verify_bundle

    with _offline(as_json):
        report = verify_bundle(path, vkey)
    if as_json:
        out.print_json(data=report.as_dict())
        return
    out.print(
        f"OK: bundle of log {report.origin!r} verifies offline: {report.size:,} events, "
        f"root {report.root}"
    )
    _signed_by(report.vkey, vkey)
    if report.proofs:
        out.print(f"{report.proofs} inclusion proof(s) verified")


def _verify_report(path: Path, vkey: str | None, as_json: bool) -> None:
    """Verify a PDF report's seal and embedded evidence, and report like ``verify`` does.

    A PDF without a seal fails (exit 1) after its evidence verified, saying so:
    removing a seal is as easy as changing a page, so an unsealed file cannot be OK.
    """
    from auditml.reports.verify import verify_report

    with _offline(as_json):
        check = verify_report(path, vkey)
    if as_json:
        out.print_json(data=check.as_dict())
        return
    out.print(
        f"OK: report {check.report_id or path.name} is intact: its {check.pages} page(s) and "
        "every other byte of the file are as they were sealed with the log key, its embedded "
        f"evidence verifies offline ({check.size:,} events of log {check.origin!r}, root "
        f"{check.root}) and the checkpoint it prints is the one that evidence proves"
    )
    _signed_by(check.vkey, vkey)


def _verify_record(path: Path, anchors: list[Path], vkey: str | None, as_json: bool) -> None:
    """Verify a record proof offline against one signed checkpoint, and say what it proves."""
    from auditml.core.records import verify_record_proof
    from auditml.core.signing import VerifierKey, open_checkpoint

    with _offline(as_json):
        if len(anchors) != 1 or vkey is None:
            raise InvalidInputError(
                "a record proof is checked against the log's signed checkpoint: give exactly "
                "one --checkpoint FILE and the log's --vkey KEY"
            )
        key = VerifierKey.parse(_read_vkey(vkey) or "")
        cp = open_checkpoint(_read_anchor(anchors[0]), key)
        proof = _read_proof(path)
        verify_record_proof(proof, cp.root_hex, origin=cp.origin, tree_size=cp.size)
    record = proof["record"]
    if as_json:
        out.print_json(
            data={
                "ok": True,
                "origin": cp.origin,
                "size": cp.size,
                "root": cp.root_hex,
                "segment_seq": proof["segment_seq"],
                "index": proof["index"],
                "record": record,
            }
        )
        return
    out.print(
        f"OK: the record of request {record.get('request_id')!r} ({record.get('model')} "
        f"version {record.get('version')} in {record.get('env')} at {record.get('time')}) is "
        f"record {proof['index']} of segment event {proof['segment_seq']} of log "
        f"{cp.origin!r}, proven against its checkpoint at size {cp.size}"
    )
    out.print(f"root {cp.root_hex}, signed by {key}")


#: The largest record proof file read: a proof is its record and two short hash paths.
MAX_PROOF_BYTES = 64 << 20
#: The largest checkpoint file read: a signed note is a few lines.
MAX_CHECKPOINT_BYTES = 1 << 20


def _read_small(path: Path, what: str, limit: int) -> bytes:
    """Return the bytes of the regular file ``path`` if it holds at most ``limit``, else raise.

    A device, pipe or folder is refused before it is read, so `/dev/zero` or a
    FIFO given by mistake can neither hang the command nor fill its memory.
    """
    from auditml._internal.infile import read_regular

    try:
        data = read_regular(path, f"{what} file", limit)
    except FileNotFoundError:
        raise InvalidInputError(f"no {what} file at {path}") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise InvalidInputError(
            f"{path} is over {limit >> 20} MiB, far more than any {what}: give the {what} file"
        )
    return data


def _read_proof(path: Path) -> dict[str, Any]:
    """Read a record proof file as JSON, or raise a sentence naming the file."""
    from auditml.core.canonical import loads_strict

    text = _read_small(path, "record proof", MAX_PROOF_BYTES)
    try:
        found = loads_strict(text)
    except (AuditmlError, ValueError, RecursionError):
        raise InvalidInputError(
            f"{path} is not a record proof: it is not JSON, as `auditml prove record` writes it"
        ) from None
    if not isinstance(found, dict):
        raise InvalidInputError(f"{path} is not a record proof: it is not a JSON object")
    return found


def _read_anchor(path: Path) -> str:
    """Read an anchored checkpoint file, or raise a sentence naming the file."""
    data = _read_small(path, "checkpoint", MAX_CHECKPOINT_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"{path} is not a checkpoint: a checkpoint is text, as `auditml checkpoint` writes it"
        ) from None


def _read_vkey(text: str | None) -> str | None:
    """Return a verifier key given as text or as a file holding it."""
    if text is None:
        return None
    if "+" not in text and os.path.lexists(text):  # a pipe or device there is refused
        data = _read_small(Path(text), "verifier key", MAX_CHECKPOINT_BYTES)
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InvalidInputError(
                f"{text} is not a verifier key file: a verifier key is one line of text, "
                "as `auditml init` prints it"
            ) from None
    return text.strip()
