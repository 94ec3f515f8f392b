"""A file's URL is checked when it is registered: what the file agent cannot use is refused then,
INVALID_ARGUMENT naming the field, the value (credentials left out) and what would do."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_file_agent_schemes import transfer_error

from cloister.errors import InvalidArgumentError, InvalidChoiceError, StatusCode
from cloister.file_agent import READ_SCHEMES, WRITE_SCHEMES, check_url

READ = "http, https, data, fusion, file"
WRITE = "http, https, fusion, file"


@pytest.mark.parametrize(
    "url",
    [
        "https://bucket.s3.amazonaws.com/key?X-Amz-Signature=abc",
        "HTTP://host:8080/file.enc",
        "data:text/plain;base64,c+mpvRfZ0fboR0j3rTgOGDBiubSzlCt9",
        "fusion:///TEACLAVE_FUSION_BASE/1234.fusion",
        "file:///srv/data/psi0.txt.enc",
    ],
)
def test_what_the_agent_reads_is_accepted_unchanged(url: str) -> None:
    assert check_url(url, output=False) == url


GIVE_READ = f"give an absolute URL with a scheme, one of: {READ}"
UNUSABLE = "cannot be used: "
MISTAKES = [
    ("", False, f"url is empty; {GIVE_READ}"),
    ("input.txt", False, f"url 'input.txt' is relative; {GIVE_READ}"),
    ("/tmp/out?sig=s3cret", True, f"url '/tmp/out' is relative; give an absolute URL with a scheme, one of: {WRITE}"),
    ("htps://host/file", False, f"url scheme 'htps' is not one of: {READ}"),
    (
        "s3://bucket/key",
        False,
        f"url scheme 's3' is not one of: {READ}; an S3 object is reached by a presigned https URL",
    ),
    (
        "data:text/plain;base64,YQ==",
        True,
        f"url scheme 'data' is not one of: {WRITE}; a data URL can be read, not written",
    ),
    ("http:///file", False, f"url 'http:///file' {UNUSABLE}it names no host"),
    ("https://user:s3cret@host:99999/f", False, f"url 'https://host:99999/f' {UNUSABLE}its port is malformed"),
    (
        "data:text/html,s3cret",
        False,
        f"url 'data:text/html,...' {UNUSABLE}malformed data URL: only data:text/plain;base64,<base64> is supported",
    ),
    (
        "data:text/plain;base64,!!s3cret",
        False,
        f"url 'data:text/plain;base64,...' {UNUSABLE}malformed data URL: the data is not valid base64",
    ),
    (
        "fusion:///elsewhere/x",
        True,
        f"url 'fusion:///elsewhere/x' {UNUSABLE}a fusion URL must look like "
        "fusion:///TEACLAVE_FUSION_BASE/<relative path>",
    ),
    (
        "fusion:///TEACLAVE_FUSION_BASE/../x",
        True,
        f"url 'fusion:///TEACLAVE_FUSION_BASE/../x' {UNUSABLE}the fusion path must be a plain relative path "
        "inside the fusion directory",
    ),
    ("file://host/x", False, f"url 'file://host/x' {UNUSABLE}a file URL must not name a host"),
    ("http://" + "a" * 9000, False, "url is 9007 characters long, over the limit of 8192"),
]


@pytest.mark.parametrize(("url", "output", "message"), MISTAKES)
def test_mistakes_are_refused_naming_what_would_do(url: str, output: bool, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        check_url(url, output=output)
    assert refused.value.status is StatusCode.INVALID_ARGUMENT
    assert refused.value.message == message
    assert "s3cret" not in refused.value.message  # no query, password or data: the audit log records refusals


def test_a_wrong_scheme_is_a_choice_refusal_naming_the_field() -> None:
    with pytest.raises(InvalidChoiceError, match=r"^new_url scheme 'ftp' is not one of"):
        check_url("ftp://host/x", output=True, field="new_url")


@pytest.mark.parametrize("scheme", sorted(set(READ_SCHEMES) | set(WRITE_SCHEMES) | {"s3"}))
def test_the_schemes_checked_are_the_schemes_the_agent_transfers(scheme: str, tmp_path: Path) -> None:
    """Each direction's list says exactly which schemes the agent itself refuses as unsupported."""
    fusion = tmp_path / "fusion"
    fusion.mkdir()
    (tmp_path / "src").write_bytes(b"x")
    url = f"{scheme}://127.0.0.1:9/x"  # nothing listens: an http transfer fails at once
    read = transfer_error(fusion, lambda agent: agent.download(url, tmp_path / "d"))
    written = transfer_error(fusion, lambda agent: agent.upload(tmp_path / "src", url))
    assert str(read).startswith("Scheme not supported") == (scheme not in READ_SCHEMES)
    assert str(written).startswith("Scheme not supported") == (scheme not in WRITE_SCHEMES)
