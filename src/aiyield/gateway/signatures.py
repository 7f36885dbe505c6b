"""Authentication of webhook deliveries and ingest requests, in constant time.

Every check fails closed: an unset secret or token matches nothing. Whether a route requires a check at all
(e.g. `/v1/events` only when `AIYIELD_INGEST_TOKENS` is set) is the server's decision, not these functions'.
"""

from __future__ import annotations

import hashlib
import hmac

_GITHUB_PREFIX = "sha256="


def _bytes(text: str) -> bytes:
    # Header values may hold any character; "replace" keeps encoding total instead of raising on lone surrogates.
    return text.encode("utf-8", "replace")


def verify_github(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `X-Hub-Signature-256` (`sha256=<hex HMAC of the raw body>`) was made with `secret`."""
    if not secret or not header or not header.startswith(_GITHUB_PREFIX):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(_bytes(expected), _bytes(header[len(_GITHUB_PREFIX) :]))


def token_matches(expected: str, given: str | None) -> bool:
    """Whether a shared-secret token (GitLab's `X-Gitlab-Token`, a bearer ingest token) equals `expected`.

    Both sides are hashed first so the comparison takes the same time whatever their lengths: `compare_digest`
    alone would reveal the expected token's length.
    """
    if not expected or given is None:
        return False
    return hmac.compare_digest(hashlib.sha256(_bytes(expected)).digest(), hashlib.sha256(_bytes(given)).digest())


def bearer_ok(tokens: list[str], authorization_header: str | None) -> bool:
    """Whether `Authorization: Bearer <token>` carries one of the configured `tokens`.

    Every token is compared, with no early exit, so the time taken does not reveal which one (or whether the
    first one) matched. An empty `tokens` list accepts nothing.
    """
    scheme, _, given = (authorization_header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = given.strip()
    matched = False
    for token in tokens:
        matched |= token_matches(token, given)
    return matched
