"""url_basename follows Teaclave's local file naming (§11.1 step 2); display_url never shows credentials."""

from __future__ import annotations

import pytest

from cloister.errors import TransferError
from cloister.file_agent import display_url, url_basename


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://host/dir/file.txt", "file.txt"),
        ("https://host/dir/file.txt?X-Amz-Signature=abc#frag", "file.txt"),
        ("http://host/dir/sub/", "sub"),
        ("http://host/dir/sub//", "sub"),
        ("http://host/a%20b.enc", "a%20b.enc"),
        ("http://host/a b.enc", "a%20b.enc"),
        ("http://host/caf\u00e9.txt", "caf%C3%A9.txt"),
        ("http://host/x/%2Fy", "%2Fy"),
        ("http://host/a/b/..", "a"),
        ("http://host/a/b/%2e%2E", "a"),
        ("http://host/a/./b/.", "b"),
        ("file:///tmp/psi0.txt.enc", "psi0.txt.enc"),
        ("fusion:///TEACLAVE_FUSION_BASE/1234.fusion", "1234.fusion"),
        ("data:text/plain;base64,SGVsbG8=", "plain;base64,SGVsbG8="),
        ("data:text/plain;base64,ab/cd+ef", "cd+ef"),
    ],
)
def test_url_basename(url: str, expected: str) -> None:
    assert url_basename(url) == expected


@pytest.mark.parametrize("url", ["http://host/", "http://host", "http://host/a/..", "file:///", "http://host/./"])
def test_url_without_a_file_name_is_refused(url: str) -> None:
    with pytest.raises(TransferError, match=r"^Cannot get filename from url: "):
        url_basename(url)


def test_basename_error_hides_the_query() -> None:
    with pytest.raises(TransferError) as caught:
        url_basename("https://bucket.s3/?X-Amz-Signature=secret")
    assert "secret" not in str(caught.value)


def test_url_without_scheme_is_refused() -> None:
    with pytest.raises(TransferError, match="no scheme"):
        url_basename("/just/a/path")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host:8443/b/k.enc?X-Amz-Signature=secret#f", "https://host:8443/b/k.enc"),
        ("file:///tmp/x?secret", "file:///tmp/x"),
        ("data:text/plain;base64,c2VjcmV0", "data:text/plain;base64,..."),
        ("fusion:///TEACLAVE_FUSION_BASE/a.fusion", "fusion:///TEACLAVE_FUSION_BASE/a.fusion"),
        ("http://host/line\nbreak\x1b[2J", "http://host/linebreak%1B[2J"),
        ("http://[bad", "<unparseable URL>"),
        # Malformed URLs keep user names and passwords, and payloads, where they do not belong.
        ("https:/alice:S3cretPw@host/p", "https:host/p"),
        ("https:///alice:S3cretPw@host/p", "https://host/p"),
        ("http:alice:S3cretPw@host", "http:host"),
        ("data:text/plain;base64;c2VjcmV0", "data:..."),
        ("data:c2VjcmV0c2VjcmV0,x", "data:..."),
    ],
)
def test_display_url(url: str, shown: str) -> None:
    assert display_url(url) == shown
