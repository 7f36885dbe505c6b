from __future__ import annotations

from typing import Iterator

import pytest
from gateway_double import GatewayDouble


@pytest.fixture
def gateway() -> Iterator[GatewayDouble]:
    """A stand-in gateway (a real HTTP server on a free loopback port) that records what plugins send."""
    double = GatewayDouble()
    yield double
    double.close()
