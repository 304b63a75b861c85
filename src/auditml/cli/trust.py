"""The trust commands of ``auditml``: keys, checkpoints, proofs, export, signatures.

Commands that sign with an encrypted key take its passphrase from
``AUDITML_KEY_PASSPHRASE`` or, on a terminal, ask for it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from auditml.cli._common import (
    ActorOption,
    DbOption,
    ForceOption,
    JsonOption,
    OnlyModelArgument,
    ReasonOption,
    app,
    ask_passphrase,
    done,
    errors,
    group,
    note_imported,
    open_log,
    out,
    table,
    tagged,
    utc,
    who,
    with_passphrase,
)
from auditml.core.events import IMPORTED_NOTE
from auditml.errors import InvalidInputError

key_app = group("The log's signing key, and people's keys for e-signatures.")
prove_app = group(
    "Print Merkle inclusion and consistency proofs (docs/format.md section 3) and record "
    "proofs (section 6)."
)
app.add_typer(key_app, name="key")
app.add_typer(prove_app, name="prove")


# -- the log key --------------------------------------------------------------------------


@key_app.command("show")
def key_show(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Print the log's verifier key (C2SP form), to hand to auditors; never the private key."""
    with errors(), open_log(db) as log:
        vkey = log.verifier_key()
        latest = log.latest_checkpoint()
        info = {
            "origin": log.origin,
            "vkey": str(vkey),
            "key_id": vkey.key_id.hex(),
            "key_file": str(log.key_path()),
            "checkpoint_every": log.checkpoint_every(),
            "latest_checkpoint": None if latest is None else latest.size,
        }
        if as_json:
            out.print_json(data=info)
            return
        out.print(str(vkey))


@key_app.command("list")
def key_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the people's signing keys registered on the log, and which are revoked."""
    from auditml.core.events import KEY_ACTIONS
    from auditml.core.keys import KeyRegistry

    with errors(), open_log(db) as log:
        registry = KeyRegistry()
        for record in log.events(action=KEY_ACTIONS):
            registry.apply(record.seq, record.event)
        rows = [
            {
                "signer": k.signer,
                "name": k.name,
                "key": k.key,
                "registered": k.registered,
                "revoked": k.revoked,
                "imported": k.imported,
            }
            for k in registry.keys.values()
        ]
        if as_json:
            out.print_json(data=rows)
            return
        if not rows:
            out.print("No signing keys registered. Add one with `auditml key register FILE.pub`.")
            return
        shown = table("signer", "name", "key", "registered", "revoked")
        for row in rows:
            revoked = row["revoked"]
            shown.add_row(
                str(row["signer"]),
                str(row["name"]),
                str(row["key"])[:16] + "…",
                tagged(f"event {row['registered']}", bool(row["imported"])),
                "-" if revoked is None else f"event {revoked}",
            )
        out.print(shown)
        if any(row["imported"] for row in rows):
            out.print(f"(imported): such a key signs no live decision; {IMPORTED_NOTE}")


@key_app.command("register")
def key_register(
    public_key: Annotated[
        Path, typer.Argument(metavar="FILE.pub", help="The public key `auditml keygen` wrote.")
    ],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Printed name [default: the file's].")
    ] = None,
    reason: ReasonOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a person's public key for e-signatures (recorded as key.register)."""
    with errors(), open_log(db) as log:
        receipt = log.register_key(public_key, name=name, reason=reason, actor=who(actor))
        done(receipt, f"Registered the signing key of {_signer_of(public_key)}", as_json)


def _signer_of(path: Path) -> str:
    from auditml._internal.keyfiles import read_public_key

    return read_public_key(path).signer


@key_app.command("revoke")
def key_revoke(
    key: Annotated[
        str, typer.Argument(metavar="KEY", help="The key's fingerprint, or its .pub file.")
    ],
    reason: ReasonOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a person's signing key: signatures made with it from now on are refused."""
    with errors(), open_log(db) as log:
        receipt = log.revoke_key(key, reason=reason, actor=who(actor))
        done(receipt, "Revoked the signing key", as_json)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "key"


@app.command()
def keygen(
    actor: Annotated[str, typer.Option("--actor", metavar="ID", help="Whose key this is.")],
    name: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Printed name, as signatures show it [default: ID]."),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write the private key [default: ~/.auditml/keys/ID.key, with the "
            "id's @ as -]; the public key goes beside it as FILE.pub.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a personal Ed25519 signing key, protected by a passphrase."""
    from auditml._internal.keyfiles import (
        PublicKeyFile,
        check_new_key_path,
        generate_key_file,
        passphrase_from_env,
    )
    from auditml._internal.output import write_output

    with errors():
        if not actor.strip():
            raise InvalidInputError("--actor is empty: give the id the key signs for")
        target = out_file or Path.home() / ".auditml" / "keys" / f"{_slug(actor)}.key"
        public = target.with_name(target.name + ".pub")
        for path in (target, public):
            if os.path.lexists(path):
                raise InvalidInputError(f"{path} already exists; keys are never overwritten")
        check_new_key_path(target)  # before the passphrase: a path refused anyway asks nothing
        phrase = passphrase_from_env() or ask_passphrase(f"the new key of {actor}", confirm=True)
        signer = generate_key_file(target, phrase)
        record = PublicKeyFile(actor, name or actor, signer.public_key)
        write_output(public, record.to_json().encode())
        if as_json:
            out.print_json(
                data={"key_file": str(target), "public_key_file": str(public), "key": record.key}
            )
            return
        out.print(f"Created the signing key of {actor} at {target} (mode 0600, encrypted)")
        out.print(f"Public key: {public} (fingerprint {record.key[:16]}…)")
        out.print(f"Have an administrator register it: auditml key register {public}")


# -- checkpoints, proofs, export -------------------------------------------------------


@app.command()
def checkpoint(
    size: Annotated[
        int | None, typer.Option(metavar="N", help="Sign the log at size N [default: now].")
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write the signed checkpoint to FILE."),
    ] = None,
    force: ForceOption = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign the log's size and root as a C2SP checkpoint: an anchor to keep elsewhere."""
    from auditml._internal.output import check_output, write_output

    with errors(), open_log(db) as log:
        protect = log._own_files()
        if out_file is not None:
            check_output(out_file, force=force, protect=protect)  # before signing anything
        cp = with_passphrase(lambda phrase: log.checkpoint(size, passphrase=phrase), "the log key")
        if out_file is not None:
            write_output(out_file, cp.note.encode(), force=force, protect=protect)
        if as_json:
            out.print_json(data=cp.as_dict())
        elif out_file is not None:
            out.print(f"Wrote the checkpoint of {cp.origin!r} at size {cp.size} to {out_file}")
            out.print(f"root {cp.root_hex}")
        else:
            sys.stdout.write(cp.note)


@prove_app.command("inclusion")
def prove_inclusion(
    seq: Annotated[int, typer.Argument(help="The event to prove.")],
    size: Annotated[
        int | None, typer.Option(metavar="N", help="The tree size [default: the log's].")
    ] = None,
    db: DbOption = None,
) -> None:
    """Print the JSON proof that event SEQ is in the log's tree of size N."""
    with errors(), open_log(db) as log:
        out.print_json(data=log.prove_inclusion(seq, size))


@prove_app.command("consistency")
def prove_consistency(
    size1: Annotated[int, typer.Argument(metavar="M", help="The earlier size.")],
    size2: Annotated[
        int | None, typer.Argument(metavar="N", help="The later size [default: the log's].")
    ] = None,
    db: DbOption = None,
) -> None:
    """Print the JSON proof that the tree of size M is a prefix of the tree of size N."""
    with errors(), open_log(db) as log:
        out.print_json(data=log.prove_consistency(size1, size2))


@prove_app.command("record")
def prove_record_command(
    request_id: Annotated[
        str, typer.Argument(metavar="REQUEST_ID", help="The request id the server recorded.")
    ],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write the proof to FILE [default: print it]."),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Prove the segment event in the tree of N events [default: the latest signed "
            "checkpoint that covers it, else the log's size].",
        ),
    ] = None,
    force: ForceOption = False,
    db: DbOption = None,
) -> None:
    """Write the record proof of REQUEST_ID (docs/format.md section 6), to check offline.

    Check it with `auditml verify --record FILE --checkpoint CP --vkey KEY`, where
    CP is the log's signed checkpoint of the proof's size (`auditml checkpoint
    --size N --out CP`).
    """
    from auditml._internal.output import check_output, write_output

    with errors(), open_log(db) as log:
        protect = log._own_files()
        if out_file is not None:
            check_output(out_file, force=force, protect=protect)
        from auditml.serving import prove_record

        proof = prove_record(log, request_id, size=size)
        if out_file is None:
            out.print_json(data=proof)
            return
        data = (json.dumps(proof, indent=2, ensure_ascii=False) + "\n").encode()
        write_output(out_file, data, force=force, protect=protect)
    tree = proof["event_inclusion"]["tree_size"]
    out.print(
        f"Wrote the record proof of request {request_id!r} (segment event "
        f"{proof['segment_seq']}, tree size {tree}) to {out_file}"
    )
    out.print(
        f"Check it offline against the checkpoint at size {tree}: auditml verify --record "
        f"{out_file} --checkpoint CP --vkey KEY"
    )


@app.command()
def export(
    out_path: Annotated[
        Path, typer.Argument(metavar="OUT", help="A new folder, or a file ending in .zip.")
    ],
    size: Annotated[
        int | None, typer.Option(metavar="N", help="Cover the first N events [default: all].")
    ] = None,
    prove: Annotated[
        list[int] | None,
        typer.Option(metavar="SEQ", help="Add the inclusion proof of event SEQ (repeatable)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing .zip file (a folder that holds anything is never replaced).",
        ),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write an evidence bundle that anyone can verify offline (docs/format.md section 5)."""
    with errors(), open_log(db) as log:
        written = with_passphrase(
            lambda phrase: log.export(
                out_path, size=size, prove=prove or (), passphrase=phrase, force=force
            ),
            "the log key",
        )
        cp = log.checkpoint(size)
        if as_json:
            out.print_json(
                data={
                    "bundle": str(written),
                    "origin": cp.origin,
                    "size": cp.size,
                    "root": cp.root_hex,
                }
            )
            return
        out.print(f"Wrote the evidence bundle of {cp.origin!r} ({cp.size} events) to {written}")
        vkey = log.verifier_key()
        out.print(f"Check it anywhere: auditml verify --bundle {written} --vkey '{vkey}'")


@app.command()
def signatures(
    model: OnlyModelArgument = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the signature manifest: printed name, time, meaning, model and version."""
    with errors(), open_log(db) as log:
        entries = log.signatures(model)
        if as_json:
            out.print_json(data=[e.as_dict() for e in entries])
            return
        if not entries:
            out.print("No signed decisions on the log.")
            return
        columns = ("seq", "signed (UTC)", "printed name", "signer", "meaning", "action")
        shown = table(*columns, "model", "version")
        for e in entries:
            shown.add_row(
                str(e.seq),
                utc(e.signed_at),
                e.name,
                e.signer,
                e.meaning,
                tagged(e.action.removeprefix("model."), e.imported),
                e.model,
                e.version,
            )
        out.print(shown)
        if any(e.imported for e in entries):
            note_imported("(imported)")
