"""One MLflow registry, one identity: every spelling of its tracking URI keys the same history."""

from __future__ import annotations

import pytest

from auditml.core.uri import MAX_REGISTRY_URI, registry_identity
from auditml.errors import InvalidInputError

CWD = "/home/dana/work"


@pytest.mark.parametrize(
    ("spellings", "identity"),
    [
        (
            [
                "http://mlflow.internal:5000",
                "http://mlflow.internal:5000/",
                "http://mlflow.internal:5000//",
                "HTTP://MLflow.Internal:5000",
                "http://mlflow.internal:05000/",
                "http://mlflow.internal:5000/#top",
                "http://bob:pw@mlflow.internal:5000/",
                "http://mlflow.internal:5000/./",
                "http://mlflow.internal:5000/x/..",
            ],
            "http://mlflow.internal:5000",
        ),
        (
            ["https://mlflow.example", "https://mlflow.example:443/", "HTTPS://mlflow.EXAMPLE:443"],
            "https://mlflow.example",
        ),
        (["http://h", "http://h:80", "http://h:80/"], "http://h"),
        (
            [
                "https://h/mlflow",
                "https://h/mlflow/",
                "https://h/a/../mlflow",
                "https://h/%6Dlflow",
            ],
            "https://h/mlflow",
        ),
        (["http://[::1]:5000", "http://[::1]:5000/"], "http://[::1]:5000"),
        (
            ["http://bücher.example:5000", "http://xn--bcher-kva.example:5000/"],
            "http://xn--bcher-kva.example:5000",
        ),
        (
            [
                "./mlruns",
                "mlruns",
                "mlruns/",
                "/home/dana/work/mlruns",
                "/home/dana/work/x/../mlruns/",
                "file:mlruns",
                "file:./mlruns/",
                "file:///home/dana/work/mlruns",
                "file:///home/dana/work/mlruns/",
                "file://localhost/home/dana/work/mlruns",
                "FILE:///home//dana/./work/mlruns",
                "file:///home/dana/work/ml%72uns",
            ],
            "file:///home/dana/work/mlruns",
        ),
        (
            [
                "sqlite:///mlflow.db",
                "sqlite:///./mlflow.db",
                "sqlite:////home/dana/work/mlflow.db",
                "sqlite:////home/dana/x/../work/mlflow.db",
                "SQLite:///mlflow.db",
                "sqlite+pysqlite:///mlflow.db",
            ],
            "sqlite:////home/dana/work/mlflow.db",
        ),
        (
            [
                "postgresql://db.example/mlflow",
                "postgresql://mlflow_user:pw@DB.example:5432/mlflow",
                "postgresql+psycopg2://db.example:5432/mlflow/",
            ],
            "postgresql://db.example/mlflow",
        ),
        (["mysql://db:3306/mlflow", "mysql+pymysql://db/mlflow"], "mysql://db/mlflow"),
        (["databricks", "Databricks", "databricks://", "DATABRICKS:///"], "databricks"),
        (["databricks://prod", "Databricks://prod/"], "databricks://prod"),
        (["databricks-uc", "databricks-uc://"], "databricks-uc"),
    ],
)
def test_every_spelling_of_one_registry_has_one_identity(
    spellings: list[str], identity: str
) -> None:
    """Case, default ports, trailing slashes, dot segments, credentials and paths all fold away."""
    assert {registry_identity(s, CWD) for s in spellings} == {identity}


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("http://h:5000", "http://h:5001"),
        ("http://h:5000", "https://h:5000"),
        ("http://h/a", "http://h/A"),  # paths are case-sensitive
        ("file:///data/mlruns", "file:///data/MLRUNS"),
        ("databricks://prod", "databricks://PROD"),  # profile names are case-sensitive
        ("databricks", "databricks://DEFAULT"),  # the bare form reads DATABRICKS_* first
        ("databricks", "databricks-uc"),  # the workspace registry is not Unity Catalog
        ("sqlite:///a.db", "sqlite:///b.db"),
        ("http://h:5000/a/../b", "http://h:5000/a"),
        ("file://fileserver/mlruns", "file:///mlruns"),
        ("http://h:5000/?x=1", "http://h:5000"),
    ],
)
def test_different_registries_keep_different_identities(one: str, other: str) -> None:
    """What can name another registry (port, scheme, path case, profile) is never folded."""
    assert registry_identity(one, CWD) != registry_identity(other, CWD)


def test_a_relative_store_depends_on_where_it_was_named() -> None:
    """./mlruns from two folders is two stores; the identity is the absolute path."""
    assert registry_identity("./mlruns", "/a") == "file:///a/mlruns"
    assert registry_identity("./mlruns", "/b/") == "file:///b/mlruns"
    assert registry_identity("../../../../mlruns", "/a/b") == "file:///mlruns"


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("http://h:5000/\nforged line", "whitespace or control"),
        ("http://h:5000\x00", "whitespace or control"),
        ("http://h:5000/\x1b[31m", "whitespace or control"),
        ("http://h:5000/\u0085", "whitespace or control"),
        ("http://h :5000", "whitespace or control"),
        ("http://h:99999", "port '99999'"),
        ("http://h:0", "port '0'"),
        ("http://h:abc", "port 'abc'"),
        ("http://h:\uff15\uff10\uff10\uff10", "port"),
        ("http://:5000", "no host"),
        ("https:///path", "no host"),
        ("http://[::1:5000", "unclosed"),
        ("http://[::1]x:5000", "after its [IPv6] host"),
        ("sqlite://host/db", "names a host"),
        ("http://" + "a" * MAX_REGISTRY_URI, "characters long"),
        ("http://" + "x" * 70 + ".\udcff:1", "no DNS"),
    ],
)
def test_a_uri_no_registry_can_have_is_refused_clearly(uri: str, said: str) -> None:
    """Hostile URIs (control characters, bad ports, no host, huge) are refused in one sentence."""
    with pytest.raises(InvalidInputError, match="tracking URI") as caught:
        registry_identity(uri, CWD)
    message = str(caught.value)
    assert said in message
    assert "\n" not in message and "\x00" not in message and "\x1b" not in message
    assert len(message) < 400


def test_a_refusal_never_shows_credentials() -> None:
    """A refused URI is named without its password."""
    with pytest.raises(InvalidInputError) as caught:
        registry_identity("https://bob:hunter2@h:99999/", CWD)
    assert "hunter2" not in str(caught.value)
