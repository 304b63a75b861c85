"""Tests of the runtime record format (docs/format.md section 6): known answers, hostile input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditml.core import merkle
from auditml.core.canonical import canonical_bytes, canonical_text, loads_strict
from auditml.core.records import (
    RuntimeRecord,
    build_record_proof,
    commitment,
    open_commitment,
    record_bytes,
    record_hash,
    record_inclusion_path,
    segment_data,
    segment_root,
    verify_record_proof,
)
from auditml.errors import InvalidInputError, VerificationError
from tests import rfc9162_reference as rfc
from tests.vector_files import require_vectors

# --------------------------------------------------------------------------- the published vectors

# Every key of known-answers.json, each checked by a test below; a new key fails
# test_every_known_answer_is_checked until a test checks it too.
KNOWN_KEYS = {
    "records",
    "record_hashes",
    "segment_root",
    "count",
    "proof_for_index_1",
    "proof_for_index_4",
    "commitment_examples",
}


@cache
def _answers() -> dict[str, Any]:
    """Return known-answers.json."""
    data: dict[str, Any] = json.loads(
        (require_vectors("runtime") / "known-answers.json").read_bytes()
    )
    return data


@cache
def _lines() -> tuple[bytes, ...]:
    """Return the lines of records.jsonl, without their newlines."""
    raw = (require_vectors("runtime") / "records.jsonl").read_bytes()
    assert raw.endswith(b"\n"), "records.jsonl ends every line, the last included, with \\n"
    return tuple(raw[:-1].split(b"\n"))


def _dicts() -> list[dict[str, Any]]:
    """Return the vector records as fresh JSON objects."""
    return [loads_strict(line) for line in _lines()]


def _records() -> list[RuntimeRecord]:
    """Return the vector records, validated."""
    return [RuntimeRecord.from_dict(item) for item in _dicts()]


def test_every_known_answer_is_checked() -> None:
    """known-answers.json holds exactly the keys these tests check, so none is skipped silently."""
    assert set(_answers()) == KNOWN_KEYS
    proofs = {key for key in _answers() if key.startswith("proof_for_index_")}
    assert proofs == {"proof_for_index_1", "proof_for_index_4"}


def test_records_file_holds_canonical_lines() -> None:
    """Each line of records.jsonl is exactly JCS(record) of a valid record, in index order."""
    assert len(_lines()) == _answers()["count"]
    for position, line in enumerate(_lines()):
        parsed = loads_strict(line)
        assert canonical_bytes(parsed) == line
        assert record_bytes(parsed) == line
        record = RuntimeRecord.from_dict(parsed)
        assert record.i == position
        assert record_bytes(record) == line
        assert record.as_dict() == parsed


def test_record_hashes() -> None:
    """Each record hash is the published one, for a record dict and a validated record alike."""
    want = _answers()["record_hashes"]
    assert [record_hash(item) for item in _dicts()] == want
    assert [record_hash(item) for item in _records()] == want
    assert [hashlib.sha256(b"\x00" + line).hexdigest() for line in _lines()] == want


def test_segment_root() -> None:
    """The segment root of the five records is the published one, and the RFC's own MTH agrees."""
    want = _answers()["segment_root"]
    assert segment_root(_records()) == want
    assert segment_root(_dicts()) == want
    assert rfc.mth(list(_lines())).hex() == want


# Record 0 and the first commitment, written out here so a bare checkout still checks them.
RECORD_0_LINE = (
    b'{"commitments":{},"env":"production","error":null,"i":0,"latency_ms":3.5,'
    b'"model":"credit-risk","output":{"label":"approve","score":0.12},"request_id":"req-0001",'
    b'"stream":"credit-risk/production","time":"2026-12-01T10:00:00.000000Z","v":1,"version":"2"}'
)
RECORD_0_HASH = "42f8c75becf3fa8390dc7b4ca3668d8f52da9c494286e63a8563823668856bb0"


def test_known_answers_written_here() -> None:
    """Record 0, its hash and the first commitment reproduce without reading the vector files."""
    record = RuntimeRecord(
        stream="credit-risk/production",
        i=0,
        request_id="req-0001",
        time="2026-12-01T10:00:00.000000Z",
        model="credit-risk",
        version="2",
        env="production",
        output={"score": 0.12, "label": "approve"},
        latency_ms=3.5,
    )
    assert record_bytes(record) == RECORD_0_LINE
    assert record_hash(record) == RECORD_0_HASH
    assert segment_root([record]) == RECORD_0_HASH  # a one-leaf tree's root is its leaf hash
    salt = bytes(range(32))
    assert commitment("customer-0042", salt) == (
        "75f49fe865da2078f7c44358d3c59e832943b60ae0439fd3311b01ebc43cc282"
    )


@pytest.mark.parametrize("index", [1, 4])
def test_record_inclusion_paths(index: int) -> None:
    """The inclusion path of records 1 and 4 is the published one, and verifies by the RFC."""
    want = _answers()[f"proof_for_index_{index}"]
    assert record_inclusion_path(_records(), index) == want
    assert record_inclusion_path(_dicts(), index) == want
    root = bytes.fromhex(_answers()["segment_root"])
    leaf = bytes.fromhex(_answers()["record_hashes"][index])
    path = [bytes.fromhex(h) for h in want]
    assert rfc.verify_inclusion(index, _answers()["count"], leaf, path, root)


def test_every_record_inclusion_path_verifies() -> None:
    """The path of every record of the segment verifies by the RFC's own algorithm."""
    root = bytes.fromhex(_answers()["segment_root"])
    for index, line in enumerate(_lines()):
        path = [bytes.fromhex(h) for h in record_inclusion_path(_records(), index)]
        assert rfc.verify_inclusion(index, len(_lines()), rfc.leaf_hash(line), path, root)


@pytest.mark.parametrize("example", range(2))
def test_commitment_examples(example: int) -> None:
    """Each published commitment: its value's JCS and commitment match, and it opens."""
    case = _answers()["commitment_examples"][example]
    salt = bytes.fromhex(case["salt_hex"])
    assert canonical_text(case["value"]) == case["jcs"]
    assert commitment(case["value"], salt) == case["commitment"]
    assert hashlib.sha256(salt + case["jcs"].encode()).hexdigest() == case["commitment"]
    open_commitment(case["value"], salt, case["commitment"])


def test_record_1_carries_the_commitment_examples() -> None:
    """Record 1 commits to exactly the two published example values, under their names."""
    examples = {case["name"]: case["commitment"] for case in _answers()["commitment_examples"]}
    assert dict(_records()[1].commitments) == examples


def test_segment_data() -> None:
    """The runtime.segment data of the vector records names their stream, count, root and times."""
    assert segment_data(_records()) == {
        "stream": "credit-risk/production",
        "count": _answers()["count"],
        "root": _answers()["segment_root"],
        "first_time": "2026-12-01T10:00:00.000000Z",
        "last_time": "2026-12-01T10:00:04.000000Z",
    }


# --------------------------------------------------------------------------- a log to prove against

LOG = "bank.example/credit-models"
SEGMENT_SEQ = 2
INDEX = 1


def _event(seq: int, prev: bytes, action: str, data: dict[str, Any]) -> bytes:
    """Return the canonical bytes of one event of the test log."""
    return canonical_bytes(
        {
            "v": 1,
            "log": LOG,
            "seq": seq,
            "prev": prev.hex() if seq else "0" * 64,
            "time": f"2026-12-01T10:00:0{seq}.500000Z",
            "actor": {"id": "serving"},
            "action": action,
            "subject": {"model": "credit-risk", "version": "2"},
            "data": data,
        }
    )


def _build_log(segment: dict[str, Any]) -> tuple[bytes, ...]:
    """Return a six-event log whose event 2 is a runtime.segment event with ``segment`` as data."""
    actions = ["log.init", "model.deploy", "runtime.segment", "model.evaluate"]
    actions += ["model.approve", "model.retire"]
    events: list[bytes] = []
    prev = b""
    for seq, action in enumerate(actions):
        data = segment if action == "runtime.segment" else {"n": seq}
        events.append(_event(seq, prev, action, data))
        prev = merkle.leaf_hash(events[-1])
    return tuple(events)


@cache
def _log() -> tuple[bytes, ...]:
    """Return the test log: its event 2 is the segment of the vector records."""
    return _build_log(segment_data(_records()))


def _leaves(events: tuple[bytes, ...] | None = None) -> list[bytes]:
    """Return the leaf hashes of a log (the test log unless given)."""
    return [merkle.leaf_hash(event) for event in events or _log()]


def _root(events: tuple[bytes, ...] | None = None) -> str:
    """Return the checkpoint root (hex) of a log (the test log unless given)."""
    return merkle.root_of(_leaves(events)).hex()


def _event_inclusion(seq: int, events: tuple[bytes, ...] | None = None) -> dict[str, Any]:
    """Return the inclusion proof (section 3) of event ``seq`` in a log, the test log by default."""
    leaves = _leaves(events)

    def node(level: int, start: int) -> bytes:
        """Return a perfect subtree hash of the log."""
        return merkle.perfect_root(leaves[start << level : (start + 1) << level])

    return {
        "type": "inclusion",
        "log": LOG,
        "tree_size": len(leaves),
        "leaf_index": seq,
        "leaf_hash": leaves[seq].hex(),
        "root": merkle.root_of(leaves).hex(),
        "proof": [h.hex() for h in merkle.inclusion_proof(seq, len(leaves), node)],
    }


def _proof(index: int = INDEX) -> dict[str, Any]:
    """Return a fresh, valid record proof of vector record ``index``."""
    return build_record_proof(
        log=LOG,
        records=_records(),
        index=index,
        segment_event=_log()[SEGMENT_SEQ],
        segment_seq=SEGMENT_SEQ,
        event_inclusion=_event_inclusion(SEGMENT_SEQ),
    )


@pytest.mark.parametrize("index", range(5))
def test_record_proof_verifies(index: int) -> None:
    """A record proof of each vector record verifies against the checkpoint, size and origin."""
    proof = _proof(index)
    assert proof["record"] == _dicts()[index]
    assert proof["proof"] == record_inclusion_path(_records(), index)
    verify_record_proof(proof, _root())
    verify_record_proof(proof, _root(), origin=LOG, tree_size=len(_log()))


def test_record_proof_survives_json() -> None:
    """A record proof written as JSON and read back still verifies: it is plain JSON."""
    proof = json.loads(json.dumps(_proof()))
    verify_record_proof(proof, _root())
    assert loads_strict(canonical_bytes(proof)) == proof


def test_record_proof_built_from_dicts() -> None:
    """Record proofs built from record dicts and from validated records are identical."""
    from_dicts = build_record_proof(
        log=LOG,
        records=_dicts(),
        index=INDEX,
        segment_event=_log()[SEGMENT_SEQ],
        segment_seq=SEGMENT_SEQ,
        event_inclusion=_event_inclusion(SEGMENT_SEQ),
    )
    assert from_dicts == _proof()


def test_record_with_unknown_keys_is_hashed_as_it_is() -> None:
    """A verifier hashes whatever the record holds: a later version's extra key is covered too."""
    records = _dicts()
    for record in records:
        record["region"] = "eu-west-1"  # a key version 1 does not have
    segment = segment_data(_records()) | {"root": segment_root(records)}
    events = _build_log(segment)
    proof = build_record_proof(
        log=LOG,
        records=records,
        index=INDEX,
        segment_event=events[SEGMENT_SEQ],
        segment_seq=SEGMENT_SEQ,
        event_inclusion=_event_inclusion(SEGMENT_SEQ, events),
    )
    assert proof["record"]["region"] == "eu-west-1"
    verify_record_proof(proof, _root(events))
    proof["record"]["region"] = "us-east-1"
    with pytest.raises(VerificationError, match="the record is not in the segment"):
        verify_record_proof(proof, _root(events))
    del proof["record"]["region"]
    with pytest.raises(VerificationError, match="the record is not in the segment"):
        verify_record_proof(proof, _root(events))


# --------------------------------------------------------------------------- tampered proofs


def _merkle_message(leaf: bytes, index: int, size: int, path: list[str], root: str) -> str:
    """Return the message auditml.merkle gives for a failing inclusion proof."""
    with pytest.raises(VerificationError) as caught:
        merkle.verify_inclusion(
            leaf, index, size, [bytes.fromhex(h) for h in path], bytes.fromhex(root)
        )
    return str(caught.value)


def _segment_edit(proof: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> None:
    """Change the segment event of ``proof``, keeping it canonical (a consistent forgery)."""
    event = json.loads(proof["segment_event"])
    edit(event)
    proof["segment_event"] = canonical_text(event)


def _record_path_message(proof: dict[str, Any]) -> str:
    """Return the message for a record that the path does not lead to the segment root."""
    segment = json.loads(proof["segment_event"])
    leaf = merkle.leaf_hash(canonical_bytes(proof["record"]))
    detail = _merkle_message(
        leaf, proof["index"], proof["count"], proof["proof"], segment["data"]["root"]
    )
    return f"record proof: the record is not in the segment (data.root): {detail}"


def _event_path_message(proof: dict[str, Any]) -> str:
    """Return the message for a segment event that its inclusion proof does not place in the log."""
    inc = proof["event_inclusion"]
    leaf = bytes.fromhex(inc["leaf_hash"])
    detail = _merkle_message(leaf, inc["leaf_index"], inc["tree_size"], inc["proof"], _root())
    return f"record proof: the segment event is not in the checkpointed log: {detail}"


def _set(*keys: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    """Return an edit that sets the proof field at ``keys`` to ``value``."""

    def edit(proof: dict[str, Any]) -> None:
        """Set the field."""
        target: Any = proof
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


OTHER = "ab" * 32


def _time_edit(proof: dict[str, Any]) -> None:
    """Change the segment event's time (a field no other check reads)."""
    _segment_edit(proof, lambda event: event.update(time="2026-12-01T10:00:09.000000Z"))


def _root_edit(proof: dict[str, Any]) -> None:
    """Point the segment event at another root."""
    _segment_edit(proof, lambda event: event["data"].update(root=OTHER))


def _both_indices(proof: dict[str, Any]) -> None:
    """Claim another record index, in the proof and in the record alike."""
    proof["index"] = proof["record"]["i"] = 2


def _rewrite_record(proof: dict[str, Any]) -> None:
    """Rewrite record 1 and re-hash its segment and segment event consistently."""
    records = _records()
    records[INDEX] = dataclasses.replace(records[INDEX], output={"label": "approve"})
    event = json.loads(proof["segment_event"])
    event["data"] = segment_data(records)
    proof["segment_event"] = canonical_text(event)
    proof["record"] = records[INDEX].as_dict()
    proof["proof"] = record_inclusion_path(records, INDEX)
    proof["event_inclusion"]["leaf_hash"] = merkle.leaf_hash(proof["segment_event"].encode()).hex()


# name: (edit of a valid proof, the exact message, or a function of the edited proof giving it)
TAMPERED: dict[
    str, tuple[Callable[[dict[str, Any]], None], str | Callable[[dict[str, Any]], str]]
] = {
    "type": (
        _set("type", value="inclusion"),
        "record proof: type must be 'record', got 'inclusion'",
    ),
    "index": (_set("index", value=2), "record proof: index 2 is not record.i 1"),
    "record.i": (_set("record", "i", value=2), "record proof: index 1 is not record.i 2"),
    "index and record.i": (_both_indices, _record_path_message),
    "record.output": (_set("record", "output", "label", value="approve"), _record_path_message),
    "record.commitments": (
        _set("record", "commitments", "subject", value=OTHER),
        _record_path_message,
    ),
    "record.latency_ms": (_set("record", "latency_ms", value=4.5), _record_path_message),
    "count": (
        _set("count", value=6),
        "record proof: count 6 is not the segment event's data.count 5",
    ),
    "segment_seq": (
        _set("segment_seq", value=3),
        "record proof: segment_seq 3 is not the segment event's seq 2",
    ),
    "proof[0]": (_set("proof", 0, value=OTHER), _record_path_message),
    "proof[2]": (_set("proof", 2, value=OTHER), _record_path_message),
    "proof too short": (lambda p: p["proof"].pop(), _record_path_message),
    "proof too long": (lambda p: p["proof"].append(OTHER), _record_path_message),
    "proof swapped": (lambda p: p["proof"].reverse(), _record_path_message),
    "segment_event.data.root": (_root_edit, _record_path_message),
    "segment_event.data.count": (
        lambda p: _segment_edit(p, lambda e: e["data"].update(count=6)),
        "record proof: count 5 is not the segment event's data.count 6",
    ),
    "segment_event.seq": (
        lambda p: _segment_edit(p, lambda e: e.update(seq=3)),
        "record proof: segment_seq 2 is not the segment event's seq 3",
    ),
    "segment_event.action": (
        lambda p: _segment_edit(p, lambda e: e.update(action="model.train")),
        "record proof: the segment event's action is 'model.train', not 'runtime.segment'",
    ),
    "segment_event.data.stream": (
        lambda p: _segment_edit(p, lambda e: e["data"].update(stream="credit-risk/staging")),
        "record proof: record.stream 'credit-risk/production' is not the segment's stream "
        "'credit-risk/staging'",
    ),
    "segment_event.log": (
        lambda p: _segment_edit(p, lambda e: e.update(log="other.example/log")),
        "record proof: log 'bank.example/credit-models' is not the segment event's log "
        "'other.example/log'",
    ),
    "log": (
        _set("log", value="other.example/log"),
        "record proof: log 'other.example/log' is not the segment event's log "
        "'bank.example/credit-models'",
    ),
    "segment_event.time": (
        _time_edit,
        lambda p: (
            "record proof: event_inclusion.leaf_hash "
            f"{p['event_inclusion']['leaf_hash']} is not the hash of segment_event "
            f"{merkle.leaf_hash(p['segment_event'].encode()).hex()}"
        ),
    ),
    "segment_event not canonical": (
        lambda p: p.update(segment_event=json.dumps(json.loads(p["segment_event"]), indent=1)),
        "record proof: segment_event is not in canonical (JCS) form, so it is not what the log "
        "hashed",
    ),
    "event_inclusion.type": (
        _set("event_inclusion", "type", value="consistency"),
        "record proof: event_inclusion.type must be 'inclusion', got 'consistency'",
    ),
    "event_inclusion.log": (
        _set("event_inclusion", "log", value="other.example/log"),
        "record proof: event_inclusion.log 'other.example/log' is not log "
        "'bank.example/credit-models'",
    ),
    "event_inclusion.leaf_index": (
        _set("event_inclusion", "leaf_index", value=3),
        "record proof: event_inclusion.leaf_index 3 is not the segment event's seq 2",
    ),
    "event_inclusion.leaf_hash": (
        _set("event_inclusion", "leaf_hash", value=OTHER),
        lambda p: (
            f"record proof: event_inclusion.leaf_hash {OTHER} is not the hash of "
            f"segment_event {merkle.leaf_hash(p['segment_event'].encode()).hex()}"
        ),
    ),
    "event_inclusion.root": (
        _set("event_inclusion", "root", value=OTHER),
        lambda p: (
            f"record proof: event_inclusion.root {OTHER} is not the trusted checkpoint "
            f"root {_root()}"
        ),
    ),
    "event_inclusion.proof[0]": (
        _set("event_inclusion", "proof", 0, value=OTHER),
        _event_path_message,
    ),
    "event_inclusion.proof[-1]": (
        _set("event_inclusion", "proof", -1, value=OTHER),
        _event_path_message,
    ),
    "event_inclusion.proof too short": (
        lambda p: p["event_inclusion"]["proof"].pop(),
        _event_path_message,
    ),
    "event_inclusion.tree_size": (
        _set("event_inclusion", "tree_size", value=4),
        _event_path_message,
    ),
    "rewritten record, re-hashed segment": (
        _rewrite_record,
        _event_path_message,
    ),
}


@pytest.mark.parametrize("name", sorted(TAMPERED))
def test_tampered_proof_names_what_failed(name: str) -> None:
    """Each tampered field of a record proof gives its own exact VerificationError message."""
    edit, expected = TAMPERED[name]
    proof = _proof()
    edit(proof)
    want = expected if isinstance(expected, str) else expected(proof)
    with pytest.raises(VerificationError) as caught:
        verify_record_proof(proof, _root())
    assert str(caught.value) == want
    malformed = name in {"type", "segment_event not canonical", "event_inclusion.type"}
    assert caught.value.kind == ("format" if malformed else "proof")


def test_wrong_checkpoint_root() -> None:
    """A valid proof checked against another checkpoint's root fails on event_inclusion.root."""
    other = merkle.root_of(_leaves()[:5]).hex()
    with pytest.raises(VerificationError) as caught:
        verify_record_proof(_proof(), other)
    assert str(caught.value) == (
        f"record proof: event_inclusion.root {_root()} is not the trusted checkpoint root {other}"
    )


def test_wrong_origin() -> None:
    """A proof of another log fails when the trusted origin is given."""
    with pytest.raises(VerificationError) as caught:
        verify_record_proof(_proof(), _root(), origin="other.example/log")
    assert str(caught.value) == (
        "record proof: log 'bank.example/credit-models' is not the trusted log 'other.example/log'"
    )


def test_tree_size_is_bound_only_when_given() -> None:
    """A tree_size the path cannot tell apart from the true one passes unless the size is given."""
    proof = _proof()
    proof["event_inclusion"]["tree_size"] = 7  # seq 2 has the same path in trees of 6 and 7
    verify_record_proof(proof, _root())  # the segment event is still in the checkpointed tree
    with pytest.raises(VerificationError) as caught:
        verify_record_proof(proof, _root(), tree_size=6)
    assert str(caught.value) == (
        "record proof: event_inclusion.tree_size 7 is not the trusted checkpoint size 6"
    )


# --------------------------------------------------------------------------- malformed proofs

PROOF_KEYS = [
    "type",
    "log",
    "record",
    "segment_event",
    "segment_seq",
    "index",
    "count",
    "proof",
    "event_inclusion",
]
INCLUSION_KEYS = ["type", "log", "tree_size", "leaf_index", "leaf_hash", "root", "proof"]


@pytest.mark.parametrize("key", PROOF_KEYS)
def test_missing_key(key: str) -> None:
    """A record proof without one of its keys is refused, naming the key."""
    proof = _proof()
    del proof[key]
    with pytest.raises(VerificationError) as caught:
        verify_record_proof(proof, _root())
    assert str(caught.value) == f"record proof: {key} is missing"
    assert caught.value.kind == "format"


@pytest.mark.parametrize("key", INCLUSION_KEYS)
def test_missing_event_inclusion_key(key: str) -> None:
    """An event_inclusion without one of its keys is refused, naming the key."""
    proof = _proof()
    del proof["event_inclusion"][key]
    with pytest.raises(VerificationError) as caught:
        verify_record_proof(proof, _root())
    assert str(caught.value) == f"record proof: event_inclusion.{key} is missing"


@pytest.mark.parametrize(
    "key", ["seq", "log", "action", "data", "data.stream", "data.count", "data.root"]
)
def test_missing_segment_event_key(key: str) -> None:
    """A segment event without a key the proof relies on is refused, naming the key."""
    proof = _proof()

    def drop(event: dict[str, Any]) -> None:
        """Remove the key."""
        *parents, last = key.split(".")
        target = event
        for part in parents:
            target = target[part]
        del target[last]

    _segment_edit(proof, drop)
    with pytest.raises(VerificationError) as caught:
        verify_record_proof(proof, _root())
    assert str(caught.value) == f"record proof: segment_event.{key} is missing"


BIG = 10**5000  # too many digits for Python to print; the message must still be made

MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "index is a string": (
        _set("index", value="1"),
        "index must be an integer from 0 to 2**53 - 1, got '1'",
    ),
    "index is a bool": (
        _set("index", value=True),
        "index must be an integer from 0 to 2**53 - 1, got True",
    ),
    "index is a float": (
        _set("index", value=1.0),
        "index must be an integer from 0 to 2**53 - 1, got 1.0",
    ),
    "index is negative": (
        _set("index", value=-1),
        "index must be an integer from 0 to 2**53 - 1, got -1",
    ),
    "index is huge": (
        _set("index", value=BIG),
        "index must be an integer from 0 to 2**53 - 1, got a 16610-bit integer",
    ),
    "count is 0": (_set("count", value=0), "count must be an integer from 1 to 2**53 - 1, got 0"),
    "count is 2**64": (
        _set("count", value=2**64),
        "count must be an integer from 1 to 2**53 - 1, got 18446744073709551616",
    ),
    "segment_seq is null": (
        _set("segment_seq", value=None),
        "segment_seq must be an integer from 0 to 2**53 - 1, got None",
    ),
    "record.i is missing": (lambda p: p["record"].pop("i"), "record.i is missing"),
    "record.i is a string": (
        _set("record", "i", value="1"),
        "record.i must be an integer from 0 to 2**53 - 1, got '1'",
    ),
    "record is a list": (_set("record", value=[1, 2]), "record must be an object, not list"),
    "record holds NaN": (
        _set("record", "output", "score", value=math.nan),
        "record has no canonical form: output.score is NaN, which JSON cannot represent; "
        "record it as a string or leave it out.",
    ),
    "record holds a huge integer": (
        _set("record", "latency_ms", value=BIG),
        "record has no canonical form: latency_ms is a 16610-bit integer, outside the range JSON "
        "numbers hold exactly (±9007199254740991); store large counters and nanosecond clocks "
        "as strings.",
    ),
    "log is a number": (_set("log", value=7), "log must be a string, got 7"),
    "proof is a string": (
        _set("proof", value=OTHER),
        f"proof must be a list of hashes, got {OTHER!r}",
    ),
    "proof hash is upper case": (
        _set("proof", 0, value=OTHER.upper()),
        f"proof[0] must be 64 lowercase hex digits, got {OTHER.upper()!r}",
    ),
    "proof hash is short": (
        _set("proof", 1, value="abcd"),
        "proof[1] must be 64 lowercase hex digits, got 'abcd'",
    ),
    "proof hash has a newline": (
        _set("proof", 1, value=OTHER + "\n"),
        f"proof[1] must be 64 lowercase hex digits, got {OTHER + chr(10)!r}",
    ),
    "proof hash is bytes": (
        _set("proof", 1, value=bytes(32)),
        "proof[1] must be 64 lowercase hex digits, got a value of type bytes",
    ),
    "proof is endless": (
        _set("proof", value=[OTHER] * 100_000),
        "proof has 100000 hashes; no inclusion path is longer than 64",
    ),
    "segment_event is an object": (
        lambda p: p.update(segment_event=json.loads(p["segment_event"])),
        "segment_event must be a string, got a value of type dict",
    ),
    "segment_event is bytes": (
        lambda p: p.update(segment_event=p["segment_event"].encode()),
        "segment_event must be a string, got a value of type bytes",
    ),
    "segment_event is not JSON": (
        _set("segment_event", value="{"),
        "segment_event is not JSON text: JSON text is invalid at line 1, column 2: "
        "Expecting property name enclosed in double quotes.",
    ),
    "segment_event has a lone surrogate": (
        _set("segment_event", value='{"a":"\ud800"}'),
        "segment_event holds a lone surrogate, which has no UTF-8 form",
    ),
    "segment_event is an array": (
        _set("segment_event", value="[]"),
        "segment_event must be an object, not list",
    ),
    "segment_event.data.root is upper case": (
        lambda p: _segment_edit(p, lambda e: e["data"].update(root=OTHER.upper())),
        f"segment_event.data.root must be 64 lowercase hex digits, got {OTHER.upper()!r}",
    ),
    "segment_event.data.count is 0": (
        lambda p: _segment_edit(p, lambda e: e["data"].update(count=0)),
        "segment_event.data.count must be an integer from 1 to 2**53 - 1, got 0",
    ),
    "event_inclusion is a list": (
        _set("event_inclusion", value=[]),
        "event_inclusion must be an object, not list",
    ),
    "event_inclusion.leaf_hash is null": (
        _set("event_inclusion", "leaf_hash", value=None),
        "event_inclusion.leaf_hash must be 64 lowercase hex digits, got None",
    ),
    "event_inclusion.tree_size is 0": (
        _set("event_inclusion", "tree_size", value=0),
        "event_inclusion.tree_size must be an integer from 1 to 2**53 - 1, got 0",
    ),
    "event_inclusion.proof is a dict": (
        _set("event_inclusion", "proof", value={}),
        "event_inclusion.proof must be a list of hashes, got a value of type dict",
    ),
    "record proof of a long string type": (
        _set("type", value="x" * 1000),
        f"type must be 'record', got {'x' * 60!r}… (1000 chars)",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_proof_names_the_field(name: str) -> None:
    """Each malformed field of a record proof gives a format VerificationError naming it."""
    edit, message = MALFORMED[name]
    proof = _proof()
    edit(proof)
    with pytest.raises(VerificationError) as caught:
        verify_record_proof(proof, _root())
    assert str(caught.value) == f"record proof: {message}"
    assert caught.value.kind == "format"


@pytest.mark.parametrize("junk", [None, 1, "record", [], b"{}", (), {}, {"type": "record"}])
def test_not_a_proof(junk: object) -> None:
    """Things that are not record proofs at all are refused with a VerificationError."""
    with pytest.raises(VerificationError):
        verify_record_proof(junk, _root())


@pytest.mark.parametrize("root", ["", "AB" * 32, "ab" * 31, None, 5, bytes(32)])
def test_bad_checkpoint_root(root: Any) -> None:
    """A trusted root that is not 64 lowercase hex digits is refused before the proof is read."""
    with pytest.raises(VerificationError, match="the trusted checkpoint root must be 64 lowercase"):
        verify_record_proof(_proof(), root)


def test_deeply_nested_record() -> None:
    """A record nested far too deeply is refused as a VerificationError, not a RecursionError."""
    proof = _proof()
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    proof["record"]["output"] = {"deep": deep}
    with pytest.raises(VerificationError, match="record has no canonical form"):
        verify_record_proof(proof, _root())


# Any JSON value, and some Python values no JSON parser returns.
JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**53, max_value=10**400)
    | st.floats()
    | st.text(max_size=70)
    | st.sampled_from([OTHER, OTHER.upper(), "record", "inclusion", LOG])
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
        | st.dictionaries(st.integers(), children, max_size=2)
        | st.tuples(children)
    ),
    max_leaves=12,
)

# Where a junk value can go in a valid proof: every key, in the proof and in its parts.
PLACES: list[tuple[str | int, ...]] = (
    [(key,) for key in PROOF_KEYS]
    + [("event_inclusion", key) for key in INCLUSION_KEYS]
    + [("record", key) for key in _dicts()[INDEX]]
    + [("record", "output", "score"), ("record", "commitments", "subject")]
    + [("proof", 0), ("event_inclusion", "proof", 1)]
)


def _same_json(a: object, b: object) -> bool:
    """Return whether two values have the same canonical bytes (so a swap changes nothing)."""
    try:
        return canonical_bytes(a) == canonical_bytes(b)
    except Exception:
        return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=JUNK | st.dictionaries(st.sampled_from(PROOF_KEYS), JUNK, max_size=9))
def test_junk_is_never_a_proof(junk: object) -> None:
    """Any generated junk, JSON or not, gives a VerificationError and nothing else."""
    with pytest.raises(VerificationError):
        verify_record_proof(junk, _root())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), junk=JUNK)
def test_one_junk_field_never_passes_or_crashes(place: tuple[str | int, ...], junk: object) -> None:
    """A valid proof with any one field replaced by junk gives a VerificationError, never passes."""
    proof = _proof()
    target: Any = proof
    for key in place[:-1]:
        target = target[key]
    if _same_json(target[place[-1]], junk):
        return  # the same bytes: still a valid proof
    target[place[-1]] = junk
    with pytest.raises(VerificationError):
        verify_record_proof(proof, _root(), origin=LOG, tree_size=len(_log()))


@settings(max_examples=200, deadline=None)
@given(root=JUNK)
def test_junk_checkpoint_root(root: Any) -> None:
    """Any junk given as the trusted root gives a VerificationError."""
    with pytest.raises(VerificationError):
        verify_record_proof(_proof(), root)


# --------------------------------------------------------------------------- record validation


def _valid() -> dict[str, Any]:
    """Return vector record 1 as a fresh dict."""
    return _dicts()[INDEX]


FIELDS_FIX = (
    "a version 1 record has v, stream, i, request_id, time, model, version, env, output, "
    "latency_ms, error, commitments"
)
STREAM_FIX = (
    "name it like 'credit-risk/production': parts of letters, digits, '.', '_' and '-', each "
    "starting with a letter or digit, joined by '/'"
)
TIME_FIX = "write it as RFC 3339 UTC with microseconds and Z, e.g. '2026-12-01T10:00:00.000000Z'"
COMMIT_FIX = "map each name to commitment(value, salt), 64 lowercase hex digits"
NOT_JSON = "which JSON cannot represent; record it as a string or leave it out."

ID_FIX = "pass the caller's id for the request"
LATENCY_FIX = "give the time to answer in milliseconds"
I_FIX = "give the record's index in its segment, 0, 1, 2, …"
SERVED_FIX = "name what served the prediction"
ERROR_FIX = "give an error code, or None when there was none"
BAD_STREAM = "not a valid stream name"
BAD_LAYOUT = "not in the format's time layout"
RANGE = "outside the range JSON numbers hold exactly (±9007199254740991)"

# (field, bad value, the message after "runtime record field ")
BAD_RECORDS: list[tuple[str, Any, str]] = [
    ("request_id", "", f"'request_id' is empty; {ID_FIX}"),
    ("request_id", "  \t", f"'request_id' is empty; {ID_FIX}"),
    ("request_id", None, f"'request_id' must be a string, not NoneType; {ID_FIX}"),
    ("request_id", 42, f"'request_id' must be a string, not int; {ID_FIX}"),
    ("output", {"score": math.nan}, f"'output' is not JSON: output.score is NaN, {NOT_JSON}"),
    (
        "output",
        {"s": [0.1, math.inf]},
        f"'output' is not JSON: output.s[1] is Infinity, {NOT_JSON}",
    ),
    (
        "output",
        {"a": {"b": -math.inf}},
        f"'output' is not JSON: output.a.b is -Infinity, {NOT_JSON}",
    ),
    (
        "output",
        {"when": datetime(2026, 1, 1)},
        "'output' is not JSON: output.when is of type datetime.datetime, which JSON cannot "
        "represent; convert it to a dict, list, str, int, float, bool or None.",
    ),
    (
        "output",
        {1: "refer"},
        "'output' is not JSON: output has the key 1 of type int, but JSON object keys must be "
        "strings; convert the key with str().",
    ),
    (
        "output",
        {"count": 2**60},
        f"'output' is not JSON: output.count is 1152921504606846976, {RANGE}; "
        "store large counters and nanosecond clocks as strings.",
    ),
    (
        "output",
        ["refer", 0.82],
        "'output' must be an object (a dict), not list; "
        'pass e.g. {"label": "refer", "score": 0.82}',
    ),
    ("stream", "", f"'stream' is empty; {STREAM_FIX}"),
    ("stream", "credit risk/prod", f"'stream' is 'credit risk/prod', {BAD_STREAM}; {STREAM_FIX}"),
    ("stream", "/production", f"'stream' is '/production', {BAD_STREAM}; {STREAM_FIX}"),
    ("stream", "credit//prod", f"'stream' is 'credit//prod', {BAD_STREAM}; {STREAM_FIX}"),
    ("stream", "credit-risk/", f"'stream' is 'credit-risk/', {BAD_STREAM}; {STREAM_FIX}"),
    ("stream", "../etc", f"'stream' is '../etc', {BAD_STREAM}; {STREAM_FIX}"),
    ("stream", "a" * 256, f"'stream' is 256 characters long, over 255; {STREAM_FIX}"),
    ("stream", 7, f"'stream' must be a string, not int; {STREAM_FIX}"),
    ("latency_ms", -1, f"'latency_ms' is -1, but it cannot be negative; {LATENCY_FIX}"),
    ("latency_ms", -0.5, f"'latency_ms' is -0.5, but it cannot be negative; {LATENCY_FIX}"),
    ("latency_ms", math.nan, f"'latency_ms' is nan, which JSON cannot represent; {LATENCY_FIX}"),
    ("latency_ms", math.inf, f"'latency_ms' is inf, which JSON cannot represent; {LATENCY_FIX}"),
    ("latency_ms", True, f"'latency_ms' must be a number, not bool; {LATENCY_FIX}"),
    ("latency_ms", "4", f"'latency_ms' must be a number, not str; {LATENCY_FIX}"),
    ("latency_ms", 2**53, f"'latency_ms' is 9007199254740992, beyond ±(2**53 - 1); {LATENCY_FIX}"),
    ("time", "2026-12-01T10:00:01Z", f"'time' is '2026-12-01T10:00:01Z', {BAD_LAYOUT}; {TIME_FIX}"),
    (
        "time",
        "2026-12-01T10:00:01.000000+00:00",
        f"'time' is '2026-12-01T10:00:01.000000+00:00', {BAD_LAYOUT}; {TIME_FIX}",
    ),
    (
        "time",
        "2026-02-30T10:00:01.000000Z",
        f"'time' is '2026-02-30T10:00:01.000000Z', which is not a real date and time; {TIME_FIX}",
    ),
    (
        "time",
        "2026-12-01T10:00:0\u0661.000000Z",  # an Arabic-Indic digit one: \d would take it
        f"'time' is '2026-12-01T10:00:0\u0661.000000Z', {BAD_LAYOUT}; {TIME_FIX}",
    ),
    ("time", 1764583201, f"'time' must be a string, not int; {TIME_FIX}"),
    ("v", 2, "'v' is 2; this is format version 1"),
    ("v", True, "'v' is True; this is format version 1"),
    ("i", -1, f"'i' is -1; {I_FIX}"),
    ("i", 1.0, f"'i' is 1.0; {I_FIX}"),
    ("i", 2**53, f"'i' is 9007199254740992; {I_FIX}"),
    ("model", "", f"'model' is empty; {SERVED_FIX}"),
    ("version", 2, f"'version' must be a string, not int; {SERVED_FIX}"),
    ("env", None, f"'env' must be a string, not NoneType; {SERVED_FIX}"),
    ("error", "", f"'error' is empty; {ERROR_FIX}"),
    ("error", 500, f"'error' must be a string, not int; {ERROR_FIX}"),
    (
        "commitments",
        {"subject": OTHER.upper()},
        f"'commitments' ['subject'] is {OTHER.upper()!r}; {COMMIT_FIX}",
    ),
    ("commitments", {"subject": None}, f"'commitments' ['subject'] is None; {COMMIT_FIX}"),
    ("commitments", {" ": OTHER}, f"'commitments' has an empty name; {COMMIT_FIX}"),
    (
        "commitments",
        "none",
        "'commitments' must be an object (a dict), not str; "
        'pass e.g. {"subject": commitment(value, salt)}',
    ),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_RECORDS)
def test_bad_record_field_is_refused(name: str, value: Any, message: str) -> None:
    """Each bad record field is refused with an InvalidInputError naming the field and the fix."""
    data = _valid()
    data[name] = value
    with pytest.raises(InvalidInputError) as caught:
        RuntimeRecord.from_dict(data)
    assert str(caught.value) == f"runtime record field {message}"


@pytest.mark.parametrize("name", list(_dicts()[0]))
def test_missing_record_field_is_refused(name: str) -> None:
    """A record without one of the format's keys is refused, naming the key."""
    data = _valid()
    del data[name]
    with pytest.raises(InvalidInputError) as caught:
        RuntimeRecord.from_dict(data)
    assert str(caught.value) == f"runtime record field {name!r} is missing; {FIELDS_FIX}"


def test_unknown_record_field_is_refused() -> None:
    """A version 1 record with a key the format does not list is refused, naming the key."""
    data = _valid()
    data["subject_id"] = "customer-0042"
    with pytest.raises(InvalidInputError) as caught:
        RuntimeRecord.from_dict(data)
    message = (
        f"runtime record field 'subject_id' is unknown; {FIELDS_FIX.replace('has', 'has only')}"
    )
    assert str(caught.value) == message


def test_record_must_be_an_object() -> None:
    """A record given as something other than a mapping is refused."""
    with pytest.raises(InvalidInputError, match="a runtime record must be an object"):
        RuntimeRecord.from_dict([])  # type: ignore[arg-type]


def test_cyclic_output_is_refused() -> None:
    """An output that contains itself is refused, naming the field, not a RecursionError."""
    data = _valid()
    loop: dict[str, Any] = {}
    loop["self"] = loop
    data["output"] = loop
    with pytest.raises(InvalidInputError) as caught:
        RuntimeRecord.from_dict(data)
    assert str(caught.value) == (
        "runtime record field 'output' is not JSON: output.self contains itself, and JSON cannot "
        "represent a reference cycle; pass a copy without the cycle."
    )


def test_deep_output_is_refused() -> None:
    """An output nested far too deeply is refused, naming the field, not a RecursionError."""
    data = _valid()
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    data["output"] = {"deep": deep}
    with pytest.raises(InvalidInputError) as caught:
        RuntimeRecord.from_dict(data)
    assert str(caught.value) == (
        "runtime record field 'output' is not JSON: the value is nested too deeply to "
        "canonicalize; flatten the structure."
    )


@pytest.mark.parametrize("depth", [64, 65, 300, 600, 900])
def test_output_nesting_is_bounded(depth: int) -> None:
    """Output may nest 64 levels (output itself is one); deeper is refused, never a crash."""
    data = _valid()
    nested: Any = 1
    for level in range(depth - 1):
        nested = {"a": nested} if level % 2 else [nested]
    data["output"] = {"deep": nested}
    if depth <= 64:
        record = RuntimeRecord.from_dict(data)
        assert loads_strict(record_bytes(record)) == record.as_dict()
        return
    with pytest.raises(InvalidInputError) as caught:
        RuntimeRecord.from_dict(data)
    assert str(caught.value) == (
        "runtime record field 'output' nests objects and arrays more than 64 levels deep; "
        "flatten it"
    )


def test_record_is_immutable() -> None:
    """A record cannot be changed after validation: its bytes always match its fields."""
    record = _records()[INDEX]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.i = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.output["label"] = "approve"  # type: ignore[index]
    with pytest.raises(TypeError):
        record.commitments["subject"] = OTHER  # type: ignore[index]
    plain = record.as_dict()
    plain["output"]["label"] = "approve"
    assert record.output["label"] == "refer"
    assert record_bytes(record) == _lines()[INDEX]


def test_record_keeps_a_copy_of_its_output() -> None:
    """Changing the dict a record was made from changes nothing in the record."""
    data = _valid()
    record = RuntimeRecord.from_dict(data)
    data["output"]["label"] = "approve"
    assert record.output["label"] == "refer"
    assert record_bytes(record) == _lines()[INDEX]


def test_replace_revalidates() -> None:
    """dataclasses.replace validates the changed record and re-hashes it."""
    record = _records()[INDEX]
    with pytest.raises(InvalidInputError, match="'latency_ms' is -1"):
        dataclasses.replace(record, latency_ms=-1)
    again = dataclasses.replace(record, output={"label": "refer", "score": 0.82})
    assert again == record
    assert hash(again) == hash(record)
    assert dataclasses.replace(record, i=2) != record


def test_equality_follows_canonical_bytes() -> None:
    """Records are equal when their canonical bytes are: 1 and 1.0 agree, 1 and True do not."""
    record = _records()[2]
    assert dataclasses.replace(record, latency_ms=1.0) == record
    flagged = dataclasses.replace(record, output={"retry": 1})
    assert dataclasses.replace(record, output={"retry": True}) != flagged
    assert record != record.as_dict()


def test_nested_output_reads_back() -> None:
    """Nested output is kept read-only and comes back from as_dict as plain JSON."""
    output = {"labels": ["a", {"b": [1, 2.5, None]}], "ok": True}
    record = dataclasses.replace(_records()[0], output=output)
    assert record.as_dict()["output"] == output
    assert record.output["labels"][1]["b"] == (1, 2.5, None)
    assert record_bytes(record) == canonical_bytes({**record.as_dict()})


# --------------------------------------------------------------------------- commitments


def test_open_commitment_refuses_another_value() -> None:
    """Opening a commitment with another value or another salt raises, saying neither fits."""
    case = _answers()["commitment_examples"][0]
    salt = bytes.fromhex(case["salt_hex"])
    wrong = commitment("customer-0043", salt)
    with pytest.raises(VerificationError) as caught:
        open_commitment("customer-0043", salt, case["commitment"])
    assert str(caught.value) == (
        f"the value and salt give the commitment {wrong}, not {case['commitment']}: "
        "the value or its salt is not the one committed to"
    )
    assert caught.value.kind == "hash"
    with pytest.raises(VerificationError, match="the value or its salt is not the one committed"):
        open_commitment(case["value"], bytes(32), case["commitment"])


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_salt_must_be_32_bytes(size: int) -> None:
    """A salt of any length but 32 bytes is refused when committing, and fails when opening."""
    with pytest.raises(InvalidInputError) as caught:
        commitment("customer-0042", bytes(size))
    assert str(caught.value) == (
        f"a commitment salt must be exactly 32 bytes, got {size}; "
        "draw it with secrets.token_bytes(32)"
    )
    with pytest.raises(
        VerificationError, match="the commitment cannot be opened: a commitment salt"
    ):
        open_commitment("customer-0042", bytes(size), OTHER)


def test_salt_must_be_bytes() -> None:
    """A salt given as hex text is refused: the salt is the 32 bytes, not their spelling."""
    salt = "00" * 32
    with pytest.raises(InvalidInputError, match="a commitment salt must be bytes, not str"):
        commitment("customer-0042", salt)  # type: ignore[arg-type]


def test_commitment_refuses_non_json_values() -> None:
    """Committing to NaN is refused at once; opening with it is a VerificationError."""
    with pytest.raises(InvalidInputError, match="NaN"):
        commitment({"x": math.nan}, bytes(32))
    with pytest.raises(VerificationError, match="the commitment cannot be opened: x is NaN"):
        open_commitment({"x": math.nan}, bytes(32), OTHER)


@pytest.mark.parametrize("expected", [OTHER.upper(), "ab", None, 5])
def test_open_commitment_refuses_a_malformed_commitment(expected: Any) -> None:
    """An expected commitment that is not 64 lowercase hex digits is a format failure."""
    with pytest.raises(VerificationError) as caught:
        open_commitment("customer-0042", bytes(32), expected)
    assert caught.value.kind == "format"
    assert "not 64 lowercase hex digits" in str(caught.value)


# --------------------------------------------------------------------------- segments


def test_segment_data_refuses_bad_segments() -> None:
    """A segment must be one stream's validated records numbered 0 … count-1, and not empty."""
    records = _records()
    with pytest.raises(InvalidInputError, match="a segment needs at least one record"):
        segment_data([])
    with pytest.raises(InvalidInputError, match="segment record 1 has i=2"):
        segment_data([records[0], records[2]])
    other = dataclasses.replace(records[1], stream="credit-risk/staging")
    with pytest.raises(
        InvalidInputError, match="segment record 1 is of stream 'credit-risk/staging'"
    ):
        segment_data([records[0], other])
    with pytest.raises(InvalidInputError, match="segment record 0 is a dict"):
        segment_data(_dicts())  # type: ignore[arg-type]


def test_segment_times_span_out_of_order_records() -> None:
    """first_time and last_time are the earliest and latest record times, whatever their order."""
    records = _records()
    records[0] = dataclasses.replace(records[0], time="2026-12-01T10:00:09.000000Z")
    data = segment_data(records)
    assert data["first_time"] == "2026-12-01T10:00:01.000000Z"
    assert data["last_time"] == "2026-12-01T10:00:09.000000Z"


@pytest.mark.parametrize("index", [-1, 5, True, 1.0])
def test_inclusion_path_refuses_a_bad_index(index: Any) -> None:
    """An index outside the segment (or not an integer) is refused."""
    with pytest.raises(InvalidInputError, match="is not in the segment of 5 records"):
        record_inclusion_path(_records(), index)


def test_inclusion_path_of_an_empty_segment() -> None:
    """No record is in an empty segment."""
    with pytest.raises(InvalidInputError, match="the segment has no records"):
        record_inclusion_path([], 0)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 9, 17])
def test_paths_match_the_rfc_for_many_sizes(count: int) -> None:
    """For segments of many sizes, the root is the RFC's MTH and every path verifies by the RFC."""
    first = _records()[0]
    records = [dataclasses.replace(first, i=n, request_id=f"req-{n}") for n in range(count)]
    lines = [record_bytes(record) for record in records]
    root = rfc.mth(lines)
    assert segment_root(records) == root.hex()
    for index in range(count):
        path = [bytes.fromhex(h) for h in record_inclusion_path(records, index)]
        assert rfc.verify_inclusion(index, count, rfc.leaf_hash(lines[index]), path, root)


def test_proof_helpers_do_not_share_state() -> None:
    """Each test proof is a fresh copy, so one test's tampering cannot leak into another's."""
    first = _proof()
    first["event_inclusion"]["proof"].append(OTHER)
    first["record"]["output"]["label"] = "x"
    assert _proof()["event_inclusion"] == _event_inclusion(SEGMENT_SEQ)
    assert _proof()["record"] == _dicts()[INDEX]
    verify_record_proof(_proof(), _root())
