"""verify says how many runtime records it checked, or that it skipped them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from auditml import AuditLog
from tests.conftest import run_cli


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log whose version 1 of 'credit' served seven requests in two segments."""
    opened, _ = AuditLog.init(db_url, origin="bank.example/credit", actor="admin")
    opened.record_training("credit", actor="ds@bank.example")
    with opened.runtime("credit", env="production", background=False) as rec:
        for n in range(7):
            rec.record(f"req-{n}", version="1", output={"score": n / 10}, latency_ms=1.0)
            if n == 3:
                rec.flush()
    try:
        yield opened
    finally:
        opened.close()


def test_the_report_counts_the_records_checked(log: AuditLog) -> None:
    """verify() reports every stored record it checked, and None when told to skip them."""
    assert log.verify().records == 7
    assert log.verify(runtime=False).records is None


def test_the_command_says_what_it_checked(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml verify` prints the record count, says so under --no-runtime, and puts it in JSON."""
    url = log.store.url
    code, out, _ = run_cli(["verify", "--db", url], capsys)
    assert code == 0 and "7 runtime record(s) verified against their segments' roots" in out
    code, out, _ = run_cli(["verify", "--db", url, "--no-runtime"], capsys)
    assert code == 0 and "runtime records not checked (--no-runtime)" in out
    code, out, _ = run_cli(["verify", "--db", url, "--json"], capsys)
    assert code == 0 and json.loads(out)["records"] == 7
