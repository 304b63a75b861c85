"""Credentials come out of a URI before it is recorded; paths and harmless parts stay as given."""

from __future__ import annotations

import pytest

from auditml.core.uri import is_secret_name, scrub_uri


@pytest.mark.parametrize(
    ("uri", "clean", "removed"),
    [
        ("https://bob:PW@host/x.csv", "https://host/x.csv", ["userinfo"]),
        ("https://bob@host/x.csv", "https://host/x.csv", ["userinfo"]),
        ("https://:PW@host:8443/x.csv", "https://host:8443/x.csv", ["userinfo"]),
        ("https://bob:p#w@host/x.csv", "https://host/x.csv", ["userinfo"]),
        ("https://bob:p/w@host/x.csv", "https://host/x.csv", ["userinfo"]),
        ("https://bob:p?w@host/x.csv", "https://host/x.csv", ["userinfo"]),
        ("https://bob:a@b@host/x.csv", "https://host/x.csv", ["userinfo"]),
        (
            "postgres://user:pw@db.example:5432/ml?sslmode=require",
            "postgres://db.example:5432/ml?sslmode=require",
            ["userinfo"],
        ),
        (
            "postgresql://db.example/ml?password=pw&sslmode=require",
            "postgresql://db.example/ml?sslmode=require",
            ["query:password"],
        ),
        (
            "s3://bucket/train.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIA%2F20260101&X-Amz-Date=20260101T000000Z"
            "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=abc123"
            "&X-Amz-Security-Token=tok",
            "s3://bucket/train.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host",
            ["query:X-Amz-Credential", "query:X-Amz-Signature", "query:X-Amz-Security-Token"],
        ),
        (
            "https://bucket.s3.amazonaws.com/k?AWSAccessKeyId=AKIA&Expires=1&Signature=zz",
            "https://bucket.s3.amazonaws.com/k?Expires=1",
            ["query:AWSAccessKeyId", "query:Signature"],
        ),
        (
            "gs://bucket/o.csv?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=ff",
            "gs://bucket/o.csv?X-Goog-Algorithm=GOOG4-RSA-SHA256",
            ["query:X-Goog-Signature"],
        ),
        (
            "https://acct.blob.core.windows.net/c/b.csv?sv=2022-11-02&sp=r&sig=Zm9v%3D",
            "https://acct.blob.core.windows.net/c/b.csv?sv=2022-11-02&sp=r",
            ["query:sig"],
        ),
        (
            "https://api.example/d?TOKEN=1&access_token=2&refresh_token=3&client_secret=4"
            "&api_key=5&pwd=6&passwd=7&secret=8&key=9&page=2",
            "https://api.example/d?page=2",
            [
                "query:TOKEN",
                "query:access_token",
                "query:refresh_token",
                "query:client_secret",
                "query:api_key",
                "query:pwd",
                "query:passwd",
                "query:secret",
                "query:key",
            ],
        ),
        ("https://h/x?token=1", "https://h/x", ["query:token"]),
        ("https://h/x?token", "https://h/x", ["query:token"]),
        ("https://h/x?Api%5FKey=1&q=a", "https://h/x?q=a", ["query:Api_Key"]),
        ("https://u:p@h/x?sig=1#top", "https://h/x#top", ["userinfo", "query:sig"]),
        (
            "https://h/cb#access_token=abc&state=xyz",
            "https://h/cb#state=xyz",
            ["fragment:access_token"],
        ),
        ("https://h/x.csv?sig=1#sheet=2", "https://h/x.csv#sheet=2", ["query:sig"]),
    ],
)
def test_credentials_are_removed_and_named(uri: str, clean: str, removed: list[str]) -> None:
    """User info and secret parameters go, by name only; the rest of the URI stays as written."""
    assert scrub_uri(uri) == (clean, removed)
    assert scrub_uri(clean) == (clean, [])


@pytest.mark.parametrize(
    "text",
    [
        "/data/train.csv",
        "/data/a?token=1.csv",
        "data/user:pw@host.csv",
        "./train.csv",
        "C:\\data\\train.csv",
        "C://data/train.csv",
        "\\\\server\\share\\train.csv",
        "file:///data/train.csv",
        "s3://bucket/train.parquet",
        "s3://bucket/@scope/train.parquet",
        "https://host/x.csv#section-2",
        "https://host/x.csv?version=3&format=csv",
        "https://[::1]:8080/x@y.csv",
        "https://host:8080/x.csv",
        "hf://datasets/org/name@main/train.parquet",
    ],
)
def test_paths_and_clean_uris_are_untouched(text: str) -> None:
    """Nothing is removed from a path, a Windows path or a URI without credentials."""
    assert scrub_uri(text) == (text, [])


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("PASSWORD", True),
        ("x-amz-signature", True),
        ("github_token", True),
        ("aws_secret", True),
        ("sas-key", True),
        ("db_password", True),
        ("sv", False),
        ("keyword", False),
        ("monkey", False),
        ("tokens", False),
        ("format", False),
    ],
)
def test_secret_parameter_names(name: str, secret: bool) -> None:
    """Exact names and the _token/_secret/_key endings count; look-alikes do not."""
    assert is_secret_name(name) is secret
