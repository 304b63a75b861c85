"""Trust: the log key, signed checkpoints, anchors, Merkle proofs, bundles and people's keys.

This service of :class:`~auditml.AuditLog` lets an outsider check the
log without trusting its database:

- The log's Ed25519 key signs checkpoints (docs/format.md section 4), by hand
  (:meth:`Trust.checkpoint`) and every N events. They are kept in an
  append-only table, one per size, so the log never signs two roots for one
  size.
- A checkpoint kept outside the database is an anchor:
  :meth:`Trust.check_anchor` proves the log still extends it with an
  RFC 9162 consistency proof, and names a truncation or a rewrite when it
  does not.
- Inclusion and consistency proofs come out as docs/format.md section 3 JSON, and
  evidence bundles as section 5 folders or zips.
- People's signing keys are registered and revoked on the log itself
  (``key.register``, ``key.revoke``), and :class:`KeyRegistry` checks every
  e-signature against the key registered for that person at that time.
"""

from __future__ import annotations

import base64
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditml._internal.keyfiles import (
    KEY_ENV,
    PublicKeyFile,
    key_path_for,
    load_signer,
    new_log_signer,
    passphrase_from_env,
    read_public_key,
)
from auditml.core import merkle
from auditml.core.canonical import loads_strict
from auditml.core.events import KEY_ACTIONS, SIGNED_ACTIONS, Actor, Event, validate_data
from auditml.core.keys import KeyRegistry, SignatureEntry, signature_entry
from auditml.core.signing import (
    Checkpoint,
    Signer,
    VerifierKey,
    open_checkpoint,
    sign_checkpoint,
)
from auditml.errors import (
    AuditmlError,
    ConfigurationError,
    InvalidInputError,
    ProofError,
    VerificationError,
)

if TYPE_CHECKING:
    from auditml.ledger import Ledger, Receipt

__all__ = ["DEFAULT_CHECKPOINT_EVERY", "Trust"]

DEFAULT_CHECKPOINT_EVERY = 1000


def _now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the mixin ---------------------------------------------------------------------------


class Trust:
    """The trust service over a ledger: the log key, checkpoints, anchors, proofs, bundles, keys."""

    def __init__(
        self,
        ledger: Ledger,
        signer: Signer | None = None,
        key_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._log_id = ledger.log_id
        self._origin = ledger.origin
        self._signer = signer
        self._key_path = Path(key_path) if key_path is not None else None
        self._checkpoint_every: int | None = None
        self._init_data: dict[str, Any] | None = None
        self._warned_key = False
        self.root = ledger.root
        self._node_getter = ledger.node_getter
        self._decided = ledger.decided
        self._records = ledger.records

    # -- the log key ------------------------------------------------------------------

    def key_path(self) -> Path:
        """Return where the log's private key is kept (see :func:`key_path_for`)."""
        return key_path_for(self._store, self._origin, self._key_path)

    def _own_files(self) -> list[Path]:
        """Return the files this log lives in (database, sidecars, key): no output replaces them."""
        from auditml._internal.output import log_files

        return log_files(self._store.url, self.key_path())

    def verifier_key(self) -> VerifierKey:
        """Return the log's verifier key, as recorded in the store."""
        text = self._store.log_key(self._log_id)
        if text is None:
            raise ConfigurationError(
                f"the log {self._origin!r} has no signing key yet: run `auditml init` to create it"
            )
        return VerifierKey.parse(text)

    def _ensure_log_key(self, passphrase: bytes | None = None) -> tuple[VerifierKey, bool]:
        """Create and record the log's key unless it has one; return it and whether it is new."""
        found = self._store.log_key(self._log_id)
        if found is not None:
            return VerifierKey.parse(found), False
        created = False
        if self._signer is None:
            self._signer, created = new_log_signer(
                self._store, self._origin, self._key_path, passphrase
            )
        vkey = VerifierKey.of(self._origin, self._signer)
        kept = self._store.put_log_key(self._log_id, str(vkey), _now_stamp())
        return VerifierKey.parse(kept), created

    def _log_signer(self, passphrase: bytes | None = None) -> Signer:
        """Return the signer of the log key, loading it and checking it is this log's key."""
        if self._signer is None:
            path = self.key_path()
            try:
                self._signer = load_signer(path, passphrase or passphrase_from_env())
            except ConfigurationError as exc:
                where = "" if str(path) in str(exc) else f" (the log key is looked for at {path})"
                raise ConfigurationError(
                    f"cannot sign a checkpoint of {self._origin!r}: {exc}{where}; set {KEY_ENV} "
                    "to use another file"
                ) from None
        vkey = self.verifier_key()
        if self._signer.public_key != vkey.public_key:
            raise ConfigurationError(
                f"the key at {self.key_path()} is not the key of the log {self._origin!r} "
                f"(the log's verifier key is {vkey})"
            )
        return self._signer

    # -- checkpoints --------------------------------------------------------------------

    def checkpoint(self, size: int | None = None, *, passphrase: bytes | None = None) -> Checkpoint:
        """Sign and keep a checkpoint of the log at ``size`` (default: now); return it."""
        root = bytes.fromhex(self.root(size))
        if size is None:
            size = self._store.head(self._origin).size  # type: ignore[union-attr]
        kept = self._store.checkpoints(self._log_id, size=size)
        if kept:
            _, kept_root, note, _ = kept[0]
            if kept_root != root:
                raise VerificationError(
                    f"the log's root at size {size} is {root.hex()}, but the checkpoint it "
                    f"signed at that size says {kept_root.hex()}: the log was rewritten",
                    kind="anchor",
                )
            return Checkpoint(self._origin, size, kept_root, note)
        cp = sign_checkpoint(self._origin, size, root, self._log_signer(passphrase))
        kept_root, note = self._store.put_checkpoint(
            self._log_id, size, root, cp.note, _now_stamp()
        )
        if kept_root != root:
            raise VerificationError(
                f"another writer kept a checkpoint at size {size} with another root: the log "
                "was rewritten",
                kind="anchor",
            )
        return Checkpoint(self._origin, size, kept_root, note)

    def checkpoints(self) -> list[Checkpoint]:
        """Return every checkpoint the log has signed, oldest first."""
        return [
            Checkpoint(self._origin, size, root, note)
            for size, root, note, _ in self._store.checkpoints(self._log_id)
        ]

    def latest_checkpoint(self) -> Checkpoint | None:
        """Return the largest checkpoint the log has signed, or None."""
        rows = self._store.checkpoints(self._log_id, latest=True)
        if not rows:
            return None
        size, root, note, _ = rows[0]
        return Checkpoint(self._origin, size, root, note)

    def _first_event_data(self) -> dict[str, Any]:
        """Return the data of the log's first event (``log.init``), read once."""
        if self._init_data is None:
            from auditml.store import EventFilter

            data: Any = {}
            with closing(self._store.query(self._log_id, EventFilter(stop=1))) as rows:
                for _, _, body in rows:
                    try:
                        data = loads_strict(body).get("data")
                    except (AuditmlError, AttributeError):
                        data = {}
            self._init_data = data if isinstance(data, dict) else {}
        return self._init_data

    def _recorded_every(self) -> int | None:
        """Return the checkpoint interval the first event records, or None (an older log)."""
        every = self._first_event_data().get("checkpoint_every")
        return every if isinstance(every, int) and not isinstance(every, bool) else None

    def checkpoint_every(self) -> int:
        """Return N: a checkpoint is signed whenever the log reaches a multiple of N (0: never)."""
        if self._checkpoint_every is None:
            recorded = self._recorded_every()
            if recorded is None:
                found = self._store.setting("checkpoint_every")
                recorded = int(found) if found is not None else DEFAULT_CHECKPOINT_EVERY
            self._checkpoint_every = recorded
        return self._checkpoint_every

    def set_checkpoint_every(self, every: int) -> None:
        """Sign a checkpoint automatically every ``every`` events (0 turns it off)."""
        if every < 0:
            raise InvalidInputError(f"checkpoint interval must be 0 or more, not {every}")
        recorded = self._recorded_every()
        if recorded is not None:
            if every != recorded:
                raise InvalidInputError(
                    f"the log {self._origin!r} signs a checkpoint every {recorded} events, as "
                    "its first event records; that interval cannot change, because verify "
                    "checks that each of those checkpoints exists"
                )
        else:
            self._store.set_setting("checkpoint_every", str(every))
        self._checkpoint_every = every

    def verify_checkpoints(self, roots: Mapping[int, bytes] | None = None) -> int | None:
        """Check every checkpoint the log kept, and that none it made is missing."""
        bound = self._first_event_data().get("vkey")
        stored = self._store.log_key(self._log_id)
        if bound is not None and stored != bound:
            what = "is missing" if stored is None else f"is {stored!r}"
            raise VerificationError(
                f"the log's key row {what}, but the log's first event binds the key {bound!r}: "
                "the key row was replaced or deleted in the database",
                kind="signature",
                seq=0,
            )
        if stored is None:
            return None
        try:
            vkey = VerifierKey.parse(stored)
        except AuditmlError as exc:
            raise VerificationError(
                f"the log's key row is not a verifier key ({exc})", kind="signature"
            ) from None
        kept = self._store.checkpoints(self._log_id)
        head_size = self._store.head(self._origin).size  # type: ignore[union-attr]
        for size, root, note, _ in kept:
            try:
                cp = open_checkpoint(note, vkey, origin=self._origin)
            except VerificationError as exc:
                raise VerificationError(
                    f"the log's checkpoint at size {size}: {exc}", kind=exc.kind
                ) from None
            if (cp.size, cp.root) != (size, root):
                raise VerificationError(
                    f"the checkpoint row at size {size} says root {root.hex()[:16]}…, but its "
                    f"signed note commits to size {cp.size}, root {cp.root.hex()[:16]}…: the "
                    "row was changed in the database",
                    kind="anchor",
                )
            if size > head_size:
                raise VerificationError(
                    f"the log holds {head_size} events, but it signed a checkpoint at size "
                    f"{size}: events were removed from its end",
                    kind="anchor",
                )
        self._check_checkpoint_roots(kept, roots or {})
        self._check_none_missing({size for size, *_ in kept}, head_size, bound is not None)
        return kept[-1][0] if kept else None

    def _check_checkpoint_roots(
        self, kept: Sequence[tuple[int, bytes, str, str]], known: Mapping[int, bytes]
    ) -> None:
        """Raise unless the log's root at each kept checkpoint's size is the root it signed."""
        sizes = [size for size, *_ in kept if size > 0 and size not in known]
        with self._store.snapshot() as snap:
            wanted = [node for size in sizes for node in merkle.perfect_nodes(0, size)]
            get = self._node_getter(snap, wanted)
            for size, root, _, _ in kept:
                found = known.get(size)
                if found is None:
                    found = merkle.root_at(size, get) if size else merkle.EMPTY_ROOT
                if found != root:
                    raise VerificationError(
                        f"the log's root at size {size} is {found.hex()[:16]}…, but the "
                        f"checkpoint it signed at that size says {root.hex()[:16]}…: the first "
                        f"{size} events were rewritten after it was signed",
                        kind="anchor",
                    )

    def _check_none_missing(self, kept: set[int], size: int, bound: bool) -> None:
        """Raise naming the first checkpoint the log made that is no longer kept."""
        every = self._recorded_every()
        promised = set(range(every, size + 1, every)) if every else set()
        if bound:
            promised.add(1)  # signed when the log was created
        missing = sorted(promised - kept)
        if missing:
            first = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise VerificationError(
                f"the checkpoint the log signed at size {first} is missing{more}: it was "
                "deleted from the database, or never signed because the log key was "
                f"unavailable when the log reached that size (if so, `auditml checkpoint "
                f"--size {first}` signs it now)",
                kind="anchor",
                seq=first - 1,
            )

    def _auto_sign(self, size: int, root: bytes) -> str | None:
        """Sign the automatic checkpoint at ``size`` inside an append; never fail the append.

        Without the log key the checkpoint is not signed, with one warning, and
        verify then names it as missing (``auditml checkpoint --size N`` signs it).
        """
        try:
            return sign_checkpoint(self._origin, size, root, self._log_signer()).note
        except AuditmlError as exc:
            if not self._warned_key:
                self._warned_key = True
                warnings.warn(
                    f"auditml did not sign the automatic checkpoint at size {size}: "
                    f"{exc.diagnostics()}",
                    stacklevel=6,
                )
            return None

    # -- proofs -----------------------------------------------------------------------------

    def check_anchors(
        self, notes: Sequence[str], vkey: VerifierKey | str | None = None
    ) -> tuple[int, ...]:
        """Check the pinned key and every anchored checkpoint; return the anchors' sizes.

        ``vkey`` pins the log's verifier key: the store's key must be it, and the
        anchors must be signed with it (default: the key recorded in the store).
        """
        pinned = VerifierKey.parse(vkey) if isinstance(vkey, str) else vkey
        held = self._store.log_key(self._log_id)
        # The key's name is the log's origin, which holds no '+' (its base64 may).
        held_name = held.split("+", 1)[0] if held else None
        if pinned is not None and held != str(pinned) and held_name != pinned.name:
            raise VerificationError(
                f"the pinned key is for the log {pinned.name!r}, but this log's key is "
                f"{held!r}: if you meant to check {pinned.name!r}, point --db at that log; if "
                "this is the log you meant, it was rewritten under another origin and key",
                kind="signature",
            )
        if pinned is not None and held != str(pinned):
            raise VerificationError(
                f"the log's key is {held!r}, not the pinned key {str(pinned)!r}: the log was "
                "rewritten and signed with another key, or the wrong key was pinned",
                kind="signature",
            )
        if notes and pinned is None:
            pinned = self.verifier_key()
        return tuple(self.check_anchor(note, pinned)["size"] for note in notes)

    def prove_inclusion(self, seq: int, size: int | None = None) -> dict[str, Any]:
        """Return the docs/format.md inclusion proof of event ``seq`` in the tree of ``size``."""
        with self._store.snapshot() as snap:
            n = self._size_in(snap, size)
            if not 0 <= seq < n:
                raise InvalidInputError(
                    f"event {seq} is not in the tree of size {n}: give a seq from 0 to {n - 1}"
                )
            get = self._node_getter(snap, merkle.inclusion_nodes(seq, n))
            leaf = get(0, seq)
            path = merkle.inclusion_proof(seq, n, get)
            root = merkle.root_at(n, get)
        return {
            "type": "inclusion",
            "log": self._origin,
            "tree_size": n,
            "leaf_index": seq,
            "leaf_hash": leaf.hex(),
            "root": root.hex(),
            "proof": [h.hex() for h in path],
        }

    def prove_consistency(self, size1: int, size2: int | None = None) -> dict[str, Any]:
        """Return the docs/format.md consistency proof from the tree of ``size1`` to ``size2``."""
        with self._store.snapshot() as snap:
            n = self._size_in(snap, size2)
            if not 1 <= size1 <= n:
                raise InvalidInputError(
                    f"size1 must be from 1 to {n} (the second size), not {size1}"
                )
            get = self._node_getter(snap, merkle.consistency_nodes(size1, n))
            path = merkle.consistency_proof(size1, n, get)
            root1, root2 = merkle.root_at(size1, get), merkle.root_at(n, get)
        return {
            "type": "consistency",
            "log": self._origin,
            "size1": size1,
            "size2": n,
            "root1": root1.hex(),
            "root2": root2.hex(),
            "proof": [h.hex() for h in path],
        }

    def _size_in(self, snap: Any, size: int | None) -> int:
        head = snap.head(self._log_id)
        assert head is not None
        if size is None:
            return int(head.size)
        if not 0 <= size <= head.size:
            raise InvalidInputError(f"size {size} is out of range: the log has {head.size} events")
        return size

    # -- anchors ------------------------------------------------------------------------------

    def check_anchor(self, note: str, key: VerifierKey | None = None) -> dict[str, Any]:
        """Prove the log still extends the anchored checkpoint ``note``; raise naming how not."""
        vkey = key if key is not None else self.verifier_key()
        cp = open_checkpoint(note, vkey, origin=self._origin)
        with self._store.snapshot() as snap:
            head = snap.head(self._log_id)
            assert head is not None
            if cp.size > head.size:
                raise VerificationError(
                    f"the log holds {head.size} events, but the anchored checkpoint commits to "
                    f"{cp.size}: the log was truncated or restored from an older backup",
                    kind="anchor",
                )
            root2 = head.root or merkle.EMPTY_ROOT
            if cp.size == 0:
                if cp.root != merkle.EMPTY_ROOT:
                    raise VerificationError(
                        "the anchored checkpoint of size 0 has a root that is not the empty tree's",
                        kind="anchor",
                    )
                return {"size": 0, "root": cp.root.hex(), "proof": []}
            get = self._node_getter(snap, merkle.consistency_nodes(cp.size, head.size))
            path = merkle.consistency_proof(cp.size, head.size, get)
        try:
            merkle.verify_consistency(cp.size, head.size, path, cp.root, root2)
        except ProofError:
            raise VerificationError(
                f"the log no longer extends the anchored checkpoint at size {cp.size} (root "
                f"{cp.root.hex()[:16]}…): its first {cp.size} events were rewritten after the "
                "anchor was taken, or it was restored from an older backup and has grown "
                "differently since",
                kind="anchor",
            ) from None
        return {
            "size": cp.size,
            "root": cp.root.hex(),
            "proof": [h.hex() for h in path],
        }

    # -- bundles ------------------------------------------------------------------------------

    def export(
        self,
        out: str | os.PathLike[str],
        *,
        size: int | None = None,
        prove: Sequence[int] = (),
        passphrase: bytes | None = None,
        force: bool = False,
    ) -> Path:
        """Write an evidence bundle of the first ``size`` events (default: all) to ``out``."""
        from auditml.bundle import check_bundle_path, write_bundle

        protect = self._own_files()
        check_bundle_path(out, force=force, protect=protect)  # before signing anything
        cp = self.checkpoint(size, passphrase=passphrase)
        proofs = [self.prove_inclusion(seq, cp.size) for seq in prove]
        return write_bundle(
            out,
            self._bodies(cp.size),
            checkpoint=cp.note,
            vkey=str(self.verifier_key()),
            proofs=proofs,
            force=force,
            protect=protect,
        )

    def _bodies(self, size: int) -> Iterator[bytes]:
        with self._store.snapshot() as snap:
            for chunk in snap.scan(self._log_id, stop=size):
                for _, _, body in chunk:
                    yield bytes(body)

    # -- people's keys ------------------------------------------------------------------------

    def register_key(
        self,
        public_key: PublicKeyFile | str | os.PathLike[str],
        *,
        signer: str | None = None,
        name: str | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Register a person's signing key (a ``.pub`` file), if policy lets ``actor`` do it."""
        from auditml.core.decide import decide_key

        record = (
            public_key if isinstance(public_key, PublicKeyFile) else read_public_key(public_key)
        )
        who = self._ledger.identify(actor)
        # Under pseudonymous actors the key is registered to the signer's pseudonym, the
        # id their decisions carry; the printed name stays in the event (21 CFR 11.50).
        owner = self._ledger.pseudonymize(
            Actor(id=signer or record.signer, name=name or record.name)
        )
        data = validate_data(
            "key.register",
            {
                "signer": owner.id,
                "name": name or record.name,
                "public_key": base64.b64encode(record.public_key).decode(),
                "key": record.key,
                "reason": reason,
            },
        )
        return self._decided(
            lambda view: decide_key(view, action="key.register", actor=who, data=data)
        )

    def revoke_key(
        self,
        key: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Revoke a registered key (by fingerprint or ``.pub`` file), if policy allows."""
        from auditml.core.decide import decide_key

        fpr = key
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            fpr = read_public_key(key).key
        who = self._ledger.identify(actor)
        return self._decided(
            lambda view: decide_key(
                view, action="key.revoke", actor=who, data={"key": fpr, "reason": reason}
            )
        )

    def signatures(self, model: str | None = None) -> list[SignatureEntry]:
        """Return the signature manifest: every signed decision (of ``model``), oldest first."""
        found = (signature_entry(r.seq, r.event) for r in self._records(model, SIGNED_ACTIONS))
        return [entry for entry in found if entry is not None]

    def verify_signatures(self) -> int:
        """Check every e-signature against the key registered for its signer at that time."""
        from auditml.store import EventFilter

        registry = KeyRegistry()
        # The database picks out key events and signed decisions, so a log of many
        # unsigned decisions is not read into Python to find its few signatures.
        wanted = EventFilter(
            actions=(*KEY_ACTIONS, *SIGNED_ACTIONS),
            containing=(b'{"action":"key.', b'"signature":'),
            sparse=True,
        )
        rows = self._store.query(self._log_id, wanted)

        def relevant() -> Iterator[tuple[int, Event]]:
            for seq, _, body in rows:
                yield seq, Event.model_validate(loads_strict(body))

        with closing(rows):  # a failure mid-stream must not keep the connection checked out
            return registry.feed(relevant(), self._origin)
