"""A newcomer's and a careless user's runtime inputs: each bad one named, nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from auditml import AuditLog, InvalidInputError
from tests.conftest import raw_query, run_cli

LINE = '{"request_id": "r-1", "version": "1", "output": {"label": "ok"}, "latency_ms": 1.0}\n'


@pytest.fixture
def log_url(db_url: str) -> Iterator[str]:
    """Yield the URL of a log where credit v1 was trained."""
    made, _ = AuditLog.init(db_url, origin="bank.example/credit", actor="admin")
    with made:
        made.record_training("credit", actor="ds@bank.example")
    yield db_url


def _events(url: str) -> int:
    """Return how many events the log holds."""
    return int(raw_query(url, "SELECT count(*) FROM auditml_event")[0][0])


def test_ingest_names_a_byte_order_mark(
    log_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file saved with a UTF-8 BOM is refused naming the BOM, not 'Expecting value'."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + LINE.encode())
    before = _events(log_url)
    args = ["runtime", "ingest", str(path), "--model", "credit", "--env", "production"]
    code, _out, err = run_cli([*args, "--db", log_url], capsys)
    assert code != 0
    assert "line 1" in err and "byte order mark" in err and "Expecting value" not in err
    assert _events(log_url) == before


def _record(url: str, **kw: object) -> None:
    """Record one request served by credit v1 in production with ``kw``."""
    with AuditLog.open(url) as log, log.runtime("credit", env="production") as rec:
        rec.record("r-1", version="1", output={"label": "ok"}, latency_ms=1.0, **kw)  # type: ignore[arg-type]


def test_personal_with_a_non_string_name_is_named_as_personal(log_url: str) -> None:
    """personal={3: ...} is refused naming personal and the key, not a 'commitments' field."""
    before = _events(log_url)
    with pytest.raises(InvalidInputError, match=r"personal names a value by 3, of type int"):
        _record(log_url, personal={"email": "a@b.example", 3: "x"})
    assert _events(log_url) == before


def test_personal_cannot_silently_replace_subject(log_url: str) -> None:
    """subject= with personal={'subject': ...} is refused; one used to replace the other."""
    before = _events(log_url)
    with pytest.raises(InvalidInputError, match=r"personal names a value 'subject'"):
        _record(log_url, subject="alice", personal={"subject": "bob"})
    assert _events(log_url) == before
    assert raw_query(log_url, "SELECT count(*) FROM auditml_record")[0][0] == 0


def test_ingest_refuses_personal_hiding_subject(
    log_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSON Lines record with subject and personal.subject is refused by line, nothing written."""
    path = tmp_path / "clash.jsonl"
    path.write_text(
        LINE + LINE.replace('"r-1"', '"r-2", "subject": "a", "personal": {"subject": "b"}')
    )
    before = _events(log_url)
    args = ["runtime", "ingest", str(path), "--model", "credit", "--env", "production"]
    code, _out, err = run_cli([*args, "--db", log_url], capsys)
    assert code != 0 and "line 2" in err and "personal names a value 'subject'" in err
    assert _events(log_url) == before


def test_check_reads_plainly_for_an_approved_version_never_deployed(log_url: str) -> None:
    """Runtime check says 'approved and never deployed', not 'but it was approved but never'."""
    from auditml.serving import runtime_check

    with AuditLog.open(log_url) as log:
        log.approve("credit", "1", actor="val@bank.example", reason="VR-1")
    _record(log_url)
    with AuditLog.open(log_url) as log:
        (finding,) = runtime_check(log)
    assert "but it was approved and never deployed to production" in finding.message


def test_ingest_with_an_empty_env_names_the_env(
    log_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--env '' is refused naming the model and env given, not only an internal 'stream' field."""
    path = tmp_path / "ok.jsonl"
    path.write_text(LINE)
    before = _events(log_url)
    args = ["runtime", "ingest", str(path), "--model", "credit", "--env", ""]
    code, _out, err = run_cli([*args, "--db", log_url], capsys)
    assert code != 0 and "model 'credit' with env ''" in err
    assert _events(log_url) == before


def test_cli_prints_a_warning_as_one_line_without_python_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ingest reaching an automatic checkpoint with no key warns in one 'warning:' line."""
    from tests.conftest import append_evaluations

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    made, _ = AuditLog.init(url, origin="bank.example/credit", actor="admin")
    with made:
        made.record_training("credit-risk", actor="ds@bank.example")
        append_evaluations(made, 999 - made.head().size, "filler")
        key = made.key_path()
    key.unlink()
    path = tmp_path / "ok.jsonl"
    path.write_text(LINE)
    args = ["runtime", "ingest", str(path), "--model", "credit-risk", "--env", "production"]
    code, _out, err = run_cli([*args, "--db", url], capsys)
    assert code == 0
    assert "warning: auditml did not sign the automatic checkpoint at size 1000" in err
    assert "UserWarning" not in err and "result = run(cur)" not in err
