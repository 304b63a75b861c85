"""The pure chain verifier on bare event bytes, as a bundle or a PDF attachment will feed it."""

import json

import pytest

from auditml import AuditLog, Draft, VerificationError
from auditml.core.canonical import canonical_bytes
from auditml.core.chain import ChainVerifier, Row

ORIGIN = "bank.example/credit-models"


@pytest.fixture(scope="module")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], str]:
    """Return the bytes of a 600-event log, and its root."""
    url = f"sqlite:///{tmp_path_factory.mktemp('chain') / 'audit.db'}"
    log, _ = AuditLog.init(url, origin=ORIGIN, actor="admin@bank.example")
    with log:
        log.append_many(
            [
                Draft.build(
                    "model.evaluate",
                    actor="ci",
                    subject={"model": "m", "version": str(i)},
                    data={"metrics": {"i": i}},
                )
                for i in range(599)
            ],
            imported=True,
        )
        return [r.body for r in log.events()], log.head().root


def _verify(bodies: list[bytes], chunk: int, origin: str = ORIGIN) -> ChainVerifier:
    verifier = ChainVerifier(origin)
    rows: list[Row] = [(None, None, body) for body in bodies]
    for start in range(0, len(rows), chunk):
        verifier.feed(rows[start : start + chunk])
    return verifier


@pytest.mark.parametrize("chunk", [1, 7, 256, 5000])
def test_bare_bytes_verify_to_the_head_root_in_any_chunking(
    bodies: tuple[list[bytes], str], chunk: int
) -> None:
    """Fed as bare bytes in chunks of any size, the log verifies to the root its head records."""
    events, root = bodies
    state = _verify(events, chunk).state()
    assert state.size == len(events)
    assert state.root.hex() == root


@pytest.mark.parametrize("chunk", [1, 7, 256, 5000])
def test_the_first_failure_does_not_depend_on_chunking(
    bodies: tuple[list[bytes], str], chunk: int
) -> None:
    """A re-encoded event with a changed value fails at the next link, whatever the chunk size."""
    events = list(bodies[0])
    changed = json.loads(events[300])
    changed["data"]["metrics"]["i"] = -1
    events[300] = canonical_bytes(changed)
    with pytest.raises(VerificationError) as info:
        _verify(events, chunk)
    assert (info.value.kind, info.value.seq) == ("link", 301)


def test_another_origin_is_refused_at_the_first_event(bodies: tuple[list[bytes], str]) -> None:
    """Verifying against the wrong origin names event 0 and both origins."""
    with pytest.raises(VerificationError, match="wrong origin") as info:
        _verify(bodies[0], 100, origin="other.example/log")
    assert info.value.seq == 0


def test_a_chain_missing_its_first_event_names_event_0(bodies: tuple[list[bytes], str]) -> None:
    """Bytes that start after event 0 are refused as a gap at event 0."""
    with pytest.raises(VerificationError) as info:
        _verify(bodies[0][1:], 100)
    assert (info.value.kind, info.value.seq) == ("seq", 0)
