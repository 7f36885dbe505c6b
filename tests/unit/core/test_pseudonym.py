import pytest

from aiyield.core.pseudonym import Pseudonymiser


def test_keyed_stable_and_idempotent():
    a, b = Pseudonymiser(b"k1"), Pseudonymiser(b"k2")
    assert a("alice") == a("alice") != a("bob")
    assert a("alice") != b("alice")
    assert a(a("alice")) == a("alice")
    assert "alice" not in a("alice")


def test_empty_key_is_refused():
    with pytest.raises(ValueError):
        Pseudonymiser(b"")
