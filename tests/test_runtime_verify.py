"""verify over runtime records never crashes, whatever their tables hold, and names what failed.

It names the first record (or value) that fails and what failed, on both
backends, serially and with its helper process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from auditml import AuditLog, VerificationError
from auditml.core import merkle
from auditml.core.records import (
    build_record_proof,
    record_proof_of_stored,
    verify_record_proof,
)
from tests.conftest import drop_triggers, loosen_records, raw_query, raw_sql, run_cli

COLUMNS = "log_id, seg, i, request_id, time, model, version, env, latency_ms, error, body"


@dataclass
class Logged:
    """A log with two segments of three records each, and what the tests need to tamper."""

    log: AuditLog
    url: str
    first: int  # seq of the first segment event
    second: int  # seq of the second
    sqlite: bool

    def body(self, request_id: str) -> bytes:
        """Return the stored body of the record of ``request_id``."""
        (row,) = raw_query(
            self.url, "SELECT body FROM auditml_record WHERE request_id = %s", (request_id,)
        )
        return bytes(row[0])

    def copy(self, request_id: str, **changes: Any) -> tuple[str, tuple[Any, ...]]:
        """Return an INSERT of a copy of the record of ``request_id`` with ``changes``."""
        (row,) = raw_query(
            self.url,
            f"SELECT {COLUMNS} FROM auditml_record WHERE request_id = %s",
            (request_id,),
        )
        values = dict(zip(COLUMNS.split(", "), row, strict=True)) | changes
        marks = ", ".join(["%s"] * len(values))
        return (
            f"INSERT INTO auditml_record ({', '.join(values)}) VALUES ({marks})",
            tuple(values.values()),
        )


@pytest.fixture
def logged(db_url: str) -> Iterator[Logged]:
    """Yield a log whose records req-0..2 are one segment and req-3..5 the next, with subjects."""
    log, _ = AuditLog.init(db_url, origin="bank.example/credit", actor="admin")
    log.record_training("credit", actor="ds@bank.example")
    for start in (0, 3):
        with log.runtime("credit", env="production", background=False) as rec:
            for n in range(start, start + 3):
                rec.record(
                    f"req-{n}",
                    version="1",
                    output={"label": "refer", "score": 0.5},
                    latency_ms=1.5 + n,
                    error="timeout" if n == 1 else None,
                    subject=f"customer-{n}",
                )
    first, second = (r.seq for r in log.events(action="runtime.segment"))
    try:
        yield Logged(log, db_url, first, second, db_url.startswith("sqlite"))
    finally:
        log.close()


def _fails(logged: Logged, *, parallel: bool = False) -> VerificationError:
    """Return the error of verify's records pass (serial, or with its helper process)."""
    size = logged.log.head().size
    with pytest.raises(VerificationError) as failed:
        logged.log._ledger.verify_records(size, parallel=parallel)
    assert failed.value.kind == "record"
    return failed.value


Tamper = Callable[[Logged], list[Any]]


@dataclass
class Case:
    """One way to tamper with the record tables, and what verify must say."""

    name: str
    tamper: Tamper
    message: str
    seg: str | None  # "first", "second", or None when no segment is to blame
    loosen: bool = False
    pg_refuses: bool = False  # PostgreSQL's column types refuse the change itself


def _seg(logged: Logged, which: str | None) -> int | None:
    return None if which is None else getattr(logged, which)


CASES = [
    Case(
        "a NULL where the body names an error",
        lambda t: ["UPDATE auditml_record SET error = NULL WHERE request_id = 'req-1'"],
        "runtime record 1: its error column holds None but its bytes say 'timeout'",
        "first",
    ),
    Case(
        "a changed latency",
        lambda t: ["UPDATE auditml_record SET latency_ms = 999 WHERE request_id = 'req-2'"],
        "runtime record 2: its latency_ms column holds 999",
        "first",
    ),
    Case(
        "a latency that is not a number",
        lambda t: [
            "UPDATE auditml_record SET latency_ms = "
            + ("'fast'" if t.sqlite else "'NaN'::float")
            + " WHERE request_id = 'req-4'"
        ],
        "runtime record 1: its latency_ms column holds",
        "second",
    ),
    Case(
        "a request id of the wrong type",
        lambda t: ["UPDATE auditml_record SET request_id = X'00ff' WHERE i = 2"],
        "runtime record 2: its request_id column holds ",
        "first",
    ),
    Case(
        "a request id that is not UTF-8",
        lambda t: [
            "UPDATE auditml_record SET request_id = "
            + ("CAST(X'ff41' AS TEXT)" if t.sqlite else "convert_from('\\xff41'::bytea, 'UTF8')")
            + " WHERE i = 0"
        ],
        "runtime record 0: its request_id column holds",
        "first",
        pg_refuses=True,
    ),
    Case(
        "a NULL body",
        lambda t: ["UPDATE auditml_record SET body = NULL WHERE request_id = 'req-1'"],
        "runtime record 1: its stored bytes are NULL, not bytes",
        "first",
        loosen=True,
    ),
    Case(
        "a body stored as text",
        lambda t: [
            "UPDATE auditml_record SET body = CAST(body AS TEXT) WHERE request_id = 'req-5'"
        ],
        "runtime record 2: its stored bytes are a str, not bytes",
        "second",
        pg_refuses=True,
    ),
    Case(
        "a huge body",
        lambda t: [
            ("UPDATE auditml_record SET body = %s WHERE request_id = 'req-3'", (b"{" * 8_000_000,))
        ],
        "runtime record 0: its stored bytes are not a JSON record",
        "second",
    ),
    Case(
        "a body that is not UTF-8",
        lambda t: [
            ("UPDATE auditml_record SET body = %s WHERE request_id = 'req-0'", (b"\xff\xfe{}",))
        ],
        "runtime record 0: its stored bytes are not a JSON record",
        "first",
    ),
    Case(
        "a record of an event that is no segment",
        lambda t: [t.copy("req-0", seg=1)],
        "claim segment 1, which is no runtime.segment event of the log",
        None,
    ),
    Case(
        "a record of a segment beyond the head",
        lambda t: [t.copy("req-0", seg=10**6)],
        "claim segment 1000000, beyond the log's last event",
        None,
    ),
    Case(
        "a record whose segment is text",
        lambda t: [t.copy("req-0", seg="seven")],
        "claim segment 'seven', which is no runtime.segment event",
        None,
        pg_refuses=True,
    ),
    Case(
        "a record whose segment is NULL",
        lambda t: [t.copy("req-0", seg=None)],
        "claim segment None, which is no runtime.segment event",
        None,
        loosen=True,
    ),
    Case(
        "a position stored twice",
        lambda t: [t.copy("req-1")],
        "runtime record 1: record 1 is stored twice",
        "first",
        loosen=True,
    ),
    Case(
        "an index that is NULL",
        lambda t: ["UPDATE auditml_record SET i = NULL WHERE request_id = 'req-4'"],
        "runtime record ",
        "second",
        loosen=True,
    ),
    Case(
        "the first record deleted",
        lambda t: ["DELETE FROM auditml_record WHERE request_id = 'req-0'"],
        "runtime record 0: record 0 is missing (the next stored is 1)",
        "first",
    ),
    Case(
        "the last record deleted",
        lambda t: ["DELETE FROM auditml_record WHERE request_id = 'req-5'"],
        "the segment commits 3 records but 2 are stored",
        "second",
    ),
    Case(
        "a segment's records all deleted",
        lambda t: [("DELETE FROM auditml_record WHERE seg = %s", (t.first,))],
        "the segment's 3 records are missing from the store",
        "first",
    ),
    Case(
        "a record added after the last",
        lambda t: [t.copy("req-2", i=3)],
        "runtime record 3: the segment commits 3 records, and this one is stored beyond them",
        "first",
    ),
    Case(
        "a negative index",
        lambda t: [t.copy("req-2", i=-1)],
        "runtime record 0: a record stored in its place has the index -1",
        "first",
    ),
    Case(
        "an output changed in place",
        lambda t: [
            (
                "UPDATE auditml_record SET body = %s WHERE request_id = 'req-4'",
                (t.body("req-4").replace(b'"score":0.5', b'"score":0.9'),),
            )
        ],
        "its records do not hash to the segment's root",
        "second",
    ),
    Case(
        "an output changed by hand",
        lambda t: [
            (
                "UPDATE auditml_record SET body = %s WHERE request_id = 'req-4'",
                (t.body("req-4").replace(b'"score":0.5', b'"score": 0.5'),),
            )
        ],
        "runtime record 1: its stored bytes are not in canonical (JCS) form",
        "second",
    ),
    Case(
        "two bodies swapped",
        lambda t: [
            ("UPDATE auditml_record SET body = %s WHERE request_id = 'req-0'", (t.body("req-1"),)),
            ("UPDATE auditml_record SET body = %s WHERE request_id = 'req-1'", (t.body("req-0"),)),
        ],
        "runtime record 0: its bytes say index 1, not 0",
        "first",
    ),
    Case(
        "a value changed",
        lambda t: [
            ("UPDATE auditml_value SET value = %s WHERE i = 1 AND seg = %s", (b'"x"', t.first))
        ],
        "do not open its commitment",
        "first",
    ),
    Case(
        "a value moved to another record",
        lambda t: [("UPDATE auditml_value SET i = 2 WHERE i = 1 AND seg = %s", (t.first,))],
        "the value row was moved or relabelled",
        "first",
    ),
    Case(
        "a value of no record",
        lambda t: [("UPDATE auditml_value SET seg = %s WHERE i = 0", (10**6,))],
        "no record is stored at segment 1000000",
        None,
    ),
    Case(
        "a value with a short salt",
        lambda t: [("UPDATE auditml_value SET salt = %s WHERE i = 0", (b"\x00",))],
        "its salt is a bytes of 1 bytes, not 32 bytes",
        None,
    ),
    Case(
        "a value with a NULL salt",
        lambda t: ["UPDATE auditml_value SET salt = NULL WHERE i = 0"],
        "its salt is NULL",
        None,
        loosen=True,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verify_names_what_was_tampered_with(logged: Logged, case: Case) -> None:
    """Each tampering fails verify with a VerificationError naming the segment and the record."""
    statements = case.tamper(logged)  # read what it needs before the tables change
    if case.loosen:
        loosen_records(logged.url)
    else:
        drop_triggers(logged.url)
    if case.pg_refuses and not logged.sqlite:
        with pytest.raises(Exception, match=r"type|syntax|invalid"):
            raw_sql(logged.url, statements)
        logged.log.verify()
        return
    raw_sql(logged.url, statements)
    failed = _fails(logged)
    assert case.message in str(failed), str(failed)
    if case.seg is not None:
        assert failed.seq == _seg(logged, case.seg)
    again = _fails(logged, parallel=True)
    assert str(again) == str(failed) and again.seq == failed.seq


def test_a_clean_log_verifies_its_records_and_values(logged: Logged) -> None:
    """Six records and their values verify, serially and with the helper process."""
    size = logged.log.head().size
    assert logged.log._ledger.verify_records(size, parallel=False) == 6
    assert logged.log._ledger.verify_records(size, parallel=True) == 6
    logged.log.verify()


def test_values_false_skips_the_values(logged: Logged) -> None:
    """verify_records(values=False) checks the records alone: a changed value goes unnoticed."""
    drop_triggers(logged.url)
    raw_sql(logged.url, [("UPDATE auditml_value SET value = %s WHERE i = 0", (b'"x"',))])
    size = logged.log.head().size
    for parallel in (False, True):
        assert logged.log._ledger.verify_records(size, parallel=parallel, values=False) == 6
    _fails(logged)


def test_an_erased_value_still_verifies(logged: Logged) -> None:
    """Erasing a value and its salt leaves a commitment nobody can open; verify still passes."""
    raw_sql(logged.url, ["DELETE FROM auditml_value WHERE i = 1"])
    assert (logged.log.verify().records or 0) > 0


def test_the_first_failure_in_order_is_named(logged: Logged) -> None:
    """With failures in both segments, the earlier one is named, also when the helper finds one."""
    drop_triggers(logged.url)
    raw_sql(
        logged.url,
        [
            "UPDATE auditml_record SET version = '9' WHERE request_id = 'req-2'",
            "DELETE FROM auditml_record WHERE request_id = 'req-4'",
        ],
    )
    for parallel in (False, True):
        failed = _fails(logged, parallel=parallel)
        assert failed.seq == logged.first and "version column holds '9'" in str(failed)


def test_failures_are_named_in_segment_order_values_with_their_records(logged: Logged) -> None:
    """A changed value of the first segment is named before a changed record of the second."""
    drop_triggers(logged.url)
    raw_sql(
        logged.url,
        [
            (
                "UPDATE auditml_value SET value = %s WHERE i = 0 AND seg = %s",
                (b'"x"', logged.first),
            ),
            "UPDATE auditml_record SET env = 'staging' WHERE request_id = 'req-5'",
        ],
    )
    for parallel in (False, True):
        failed = _fails(logged, parallel=parallel)
        assert failed.seq == logged.first and "do not open its commitment" in str(failed)


def test_the_cli_names_a_tampered_record_without_a_traceback(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml verify` exits non-zero naming the record; --no-runtime passes on the same log."""
    drop_triggers(logged.url)
    raw_sql(logged.url, ["UPDATE auditml_record SET model = 'fraud' WHERE request_id = 'req-3'"])
    code, out, err = run_cli(["verify", "--db", logged.url], capsys)
    assert code != 0 and "model column holds 'fraud'" in out + err
    code, _, _ = run_cli(["verify", "--db", logged.url, "--no-runtime"], capsys)
    assert code == 0


def test_the_fast_tree_root_is_rfc_9162s() -> None:
    """Verify's Merkle root over leaf hashes equals the reference root for every size up to 70."""
    for size in range(71):
        leaves = [hashlib.sha256(bytes([n])).digest() for n in range(size)]
        assert merkle.unchecked_root(leaves) == merkle.root_of(leaves)


def test_the_fast_leaf_hashes_are_rfc_9162s() -> None:
    """Leaf hashes from a copied prefix context are SHA-256(0x00 || body), bodies of any length."""
    bodies = [bytes(range(n % 256)) * (n // 7 + 1) for n in range(300)] + [b""]
    assert merkle.leaf_hashes(bodies) == [merkle.leaf_hash(body) for body in bodies]


def test_a_proof_from_stored_bytes_is_the_proof_from_records(logged: Logged) -> None:
    """The record proof trace builds from stored bytes equals build_record_proof's, and verifies."""
    log = logged.log
    bodies = log.store.segment_bodies(log._ledger.log_id, logged.second)
    (event,) = list(log.events(start=logged.second, stop=logged.second + 1))
    size = log.head().size
    common = {
        "log": log.origin,
        "index": 2,
        "segment_event": event.body,
        "segment_seq": logged.second,
        "event_inclusion": log.prove_inclusion(logged.second, size),
    }
    proof = record_proof_of_stored(bodies=bodies, **common)
    assert proof == build_record_proof(records=[json.loads(b) for b in bodies], **common)
    verify_record_proof(proof, log.root(size), origin=log.origin, tree_size=size)
