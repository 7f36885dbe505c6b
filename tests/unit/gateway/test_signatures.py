import hashlib
import hmac
from pathlib import Path

import pytest

from aiyield.gateway.signatures import bearer_ok, token_matches, verify_github

PUSH_BODY = (Path(__file__).parents[2] / "fixtures" / "github" / "push.branch.json").read_bytes()


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_github_documented_test_vector() -> None:
    # From GitHub's "Validating webhook deliveries" page.
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verify_github(b"It's a Secret to Everybody", b"Hello, World!", header)


def test_github_signature_over_a_real_delivery_body() -> None:
    assert verify_github(b"s3cret", PUSH_BODY, sign(b"s3cret", PUSH_BODY))


@pytest.mark.parametrize(
    "secret, body, header",
    [
        (b"other", PUSH_BODY, sign(b"s3cret", PUSH_BODY)),  # wrong secret
        (b"s3cret", PUSH_BODY + b" ", sign(b"s3cret", PUSH_BODY)),  # body changed after signing
        (b"s3cret", PUSH_BODY, None),  # header missing
        (b"s3cret", PUSH_BODY, ""),
        (b"s3cret", PUSH_BODY, sign(b"s3cret", PUSH_BODY)[len("sha256=") :]),  # no algorithm prefix
        (b"s3cret", PUSH_BODY, "sha1=" + hmac.new(b"s3cret", PUSH_BODY, hashlib.sha1).hexdigest()),  # legacy header
        (b"s3cret", PUSH_BODY, "sha256="),
        (b"s3cret", PUSH_BODY, "sha256=zz\u00e9\udc80"),  # non-hex, non-ASCII, lone surrogate: no exception
        (b"", PUSH_BODY, sign(b"", PUSH_BODY)),  # no secret configured: nothing verifies
    ],
)
def test_github_bad_signatures_are_rejected(secret: bytes, body: bytes, header: str | None) -> None:
    assert not verify_github(secret, body, header)


@pytest.mark.parametrize(
    "expected, given, ok",
    [
        ("gl-token", "gl-token", True),
        ("gl-token", "gl-tokeN", False),
        ("gl-token", "gl-token-longer", False),
        ("gl-token", "", False),
        ("gl-token", None, False),
        ("", "", False),  # an unset token matches nothing
        ("tök\u00e9n", "tök\u00e9n", True),
        ("token", "t\udc80ken", False),
    ],
)
def test_token_matches(expected: str, given: str | None, ok: bool) -> None:
    assert token_matches(expected, given) is ok


@pytest.mark.parametrize(
    "header, ok",
    [
        ("Bearer second", True),
        ("Bearer first", True),
        ("bearer second", True),  # the scheme is case-insensitive (RFC 7235)
        ("  Bearer   second  ", True),
        ("Bearer third", False),
        ("Bearer", False),
        ("Bearer ", False),
        ("Basic second", False),
        ("second", False),
        ("", False),
        (None, False),
    ],
)
def test_bearer_ok(header: str | None, ok: bool) -> None:
    assert bearer_ok(["first", "second"], header) is ok


def test_bearer_ok_with_no_tokens_configured_accepts_nothing() -> None:
    assert not bearer_ok([], "Bearer anything")
    assert not bearer_ok([""], "Bearer ")
