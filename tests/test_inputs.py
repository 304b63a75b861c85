"""Hostile or careless input must not hurt: secrets in URLs, huge text, bad policies, locks.

Issue 14, "Inputs that must not hurt": each test feeds one such input through
the CLI or the API and asserts the exact outcome.
"""

from __future__ import annotations

import pytest

from auditml import AuditLog
from auditml.cli import main
from auditml.store import redact
from tests.conftest import postgres_base_url

ORIGIN = "bank.example/credit-models"
SECRET = "s3cret-Pw"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process and return (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def with_param(url: str, param: str) -> str:
    """Return ``url`` with one more query parameter."""
    return f"{url}{'&' if '?' in url else '?'}{param}"


# -- 1. secrets in database URLs ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:pw1@h/db", "postgresql://bob:***@h/db"),
        (
            f"postgresql://bob@h/db?password={SECRET}&sslmode=require",
            "postgresql://bob@h/db?password=***&sslmode=require",
        ),
        (
            f"postgresql://h/db?sslpassword={SECRET}&passfile=/home/b/.pgpass",
            "postgresql://h/db?passfile=***&sslpassword=***",
        ),
        (
            f"postgresql://h/db?options=-c%20password%3D{SECRET}",
            "postgresql://h/db?options=***",
        ),
        (
            "postgresql://h/db?options=-csearch_path%3Dx",
            "postgresql://h/db?options=-csearch_path%3Dx",
        ),
        (
            f"postgresql://bob:{SECRET}@h:noport/db?password={SECRET}",
            "postgresql://bob:***@h:noport/db?password=***",
        ),
    ],
)
def test_redact_hides_every_password_form(url: str, shown: str) -> None:
    """user:pw@, ?password=, sslpassword, passfile and a password in options all print as ***."""
    assert redact(url) == shown


def test_url_password_never_printed(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`init` output, its --json, `head` and log.url show ?password= masked, on both backends."""
    url = with_param(db_url, f"password={SECRET}")
    code, out, err = run(["init", "--origin", ORIGIN, "--db", url], capsys)
    assert code == 0, err
    assert SECRET not in out + err and "password=***" in out
    code, out, err = run(["init", "--db", url, "--json"], capsys)
    assert code == 0 and SECRET not in out + err and "password=***" in out
    code, out, err = run(["head", "--db", url], capsys)
    assert code == 0 and SECRET not in out + err and "password=***" in out
    with AuditLog.open(url) as log:
        assert SECRET not in log.url and "password=***" in log.url


def test_url_password_hidden_in_connect_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """An unusable store or a URL that does not parse is named without its secrets."""
    bad = [
        f"postgresql://bob:{SECRET}@h:noport/db?password={SECRET}",
        f"mysql://bob:{SECRET}@h/db?password={SECRET}",
    ]
    base = postgres_base_url()
    if base is not None:
        missing = base.rsplit("/", 1)[0] + "/auditml_no_such_db"
        bad.append(with_param(missing, f"password={SECRET}"))
    for url in bad:
        code, out, err = run(["head", "--db", url], capsys)
        assert code == 2, err
        assert err.startswith("error: ") and SECRET not in out + err and "***" in err
