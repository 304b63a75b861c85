"""Proofs made by a real log, through the API and the CLI, pass the independent RFC 9162 verifier.

The log is grown in uneven batches past 1,024 events, so proofs cross the sizes
where the store switches from leaves to kept interior nodes. Roots are recomputed
by the reference from the stored event bytes, not taken from the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from auditml import AuditLog, Draft
from tests import rfc9162_reference as rfc
from tests.conftest import raw_query
from tests.test_cli import run

ORIGIN = "bank.example/reference"
BATCHES = (1, 6, 300, 217, 500, 76)  # with log.init: 1,101 events
SIZES = (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 255, 256, 257, 511, 512, 513, 600, 1023, 1024, 1025, 1101)


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log of 1,101 events appended in uneven batches."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")
    with made:
        n = 0
        for batch in BATCHES:
            made.append_many(
                [
                    Draft.build(
                        "model.evaluate",
                        actor="ci@bank.example",
                        subject={"model": "credit-risk", "version": str(1 + (n + i) // 100)},
                        data={"metrics": {"auc": 0.5 + (n + i) / 10_000}},
                    )
                    for i in range(batch)
                ],
                imported=True,
            )
            n += batch
        yield made


def _entries(url: str) -> list[bytes]:
    """Return the stored canonical bytes of every event, the RFC's entries d(0)..d(n-1)."""
    return [
        bytes(body) for (body,) in raw_query(url, "SELECT body FROM auditml_event ORDER BY seq")
    ]


def _indices(size: int) -> set[int]:
    return {i for i in (0, 1, size // 3, size // 2, size - 2, size - 1) if 0 <= i < size}


def _hashes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def _check_inclusion(proof: dict[str, object], entries: list[bytes]) -> None:
    """Assert the proof's leaf and root are the reference's, and the reference accepts it."""
    i, n = proof["leaf_index"], proof["tree_size"]
    assert isinstance(i, int) and isinstance(n, int)
    leaf, root = bytes.fromhex(str(proof["leaf_hash"])), bytes.fromhex(str(proof["root"]))
    assert leaf == rfc.leaf_hash(entries[i])
    assert root == rfc.mth(entries[:n])
    path = _hashes(proof["proof"])  # type: ignore[arg-type]
    assert rfc.verify_inclusion(i, n, leaf, path, root), (i, n)
    if n > 1:  # the same proof does not prove a neighbouring event
        other = rfc.leaf_hash(entries[i - 1 if i else 1])
        assert not rfc.verify_inclusion(i, n, other, path, root), (i, n)


def _check_consistency(proof: dict[str, object], entries: list[bytes]) -> None:
    """Assert both roots are the reference's, and the reference accepts the proof."""
    m, n = proof["size1"], proof["size2"]
    assert isinstance(m, int) and isinstance(n, int)
    root1, root2 = bytes.fromhex(str(proof["root1"])), bytes.fromhex(str(proof["root2"]))
    assert (root1, root2) == (rfc.mth(entries[:m]), rfc.mth(entries[:n]))
    path = _hashes(proof["proof"])  # type: ignore[arg-type]
    assert rfc.verify_consistency(m, n, root1, root2, path), (m, n)
    if m < n:  # the proof does not tie a different older tree to the newer one
        assert not rfc.verify_consistency(m, n, rfc.mth(entries[1 : m + 1]), root2, path)


def test_api_inclusion_proofs_pass_the_reference(log: AuditLog) -> None:
    """prove_inclusion at every interesting size and index is accepted by the RFC verifier."""
    entries = _entries(log.url)
    assert len(entries) == 1 + sum(BATCHES)
    for size in SIZES:
        for i in _indices(size):
            _check_inclusion(log.prove_inclusion(i, size), entries)
    _check_inclusion(log.prove_inclusion(700), entries)  # the log's own size by default


def test_api_consistency_proofs_pass_the_reference(log: AuditLog) -> None:
    """prove_consistency between every pair of interesting sizes is accepted by the RFC verifier."""
    entries = _entries(log.url)
    for n in SIZES:
        for m in SIZES:
            if m <= n:
                _check_consistency(log.prove_consistency(m, n), entries)
    _check_consistency(log.prove_consistency(513), entries)


def test_cli_proofs_pass_the_reference(log: AuditLog, capsys: pytest.CaptureFixture[str]) -> None:
    """`auditml prove` prints JSON proofs that the RFC verifier accepts."""
    entries = _entries(log.url)
    for i, size in ((0, 1), (5, 9), (511, 513), (1024, 1101), (600, None)):
        args = ["prove", "inclusion", str(i), "--db", log.url]
        code, out, err = run([*args, "--size", str(size)] if size else args, capsys)
        assert code == 0, err
        _check_inclusion(json.loads(out), entries)
    for m, n in ((1, 2), (7, 8), (256, 1025), (1023, None)):
        extra = [str(n)] if n else []
        code, out, err = run(["prove", "consistency", str(m), *extra, "--db", log.url], capsys)
        assert code == 0, err
        _check_consistency(json.loads(out), entries)
