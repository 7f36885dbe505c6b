"""Pseudonymisation of developer ids (docs/INTERFACE.md §1): a keyed HMAC, applied at ingest.

Raw ids never reach Redis, logs, metrics or the dead-letter topic. The output carries a marker prefix so applying
the function twice (the gateway validates and so does the worker) yields the same pseudonym as applying it once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

PREFIX = "px:"
_PSEUDONYM = re.compile(r"^px:[0-9a-f]{32}$")


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the pseudonym key must not be empty")
        self._key = key
        # Developers repeat across events: one HMAC per distinct id per process (bounded, so memory is too).
        self._cached = functools.lru_cache(maxsize=65536)(self._compute)

    def __call__(self, developer: str) -> str:
        return self._cached(developer)

    def _compute(self, developer: str) -> str:
        if _PSEUDONYM.match(developer):
            return developer
        digest = hmac.new(self._key, developer.encode(), hashlib.sha256).hexdigest()[:32]
        return PREFIX + digest
