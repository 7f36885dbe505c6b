from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aiyield.core.cardinality import OTHER, Caps, admit, top_names


def test_known_names_kept_new_ones_admitted_up_to_the_cap_then_folded():
    a = admit({"team": {"a", "b"}}, Caps(team=3), {"team": ["a", "c", "d", "d", "b", "e", OTHER]})
    assert a.admitted == {"team": ["c"]}
    assert a.rename == {"team": {"d": OTHER, "e": OTHER}}
    assert a.overflow == {"team": 3}  # d twice, e once
    assert [a.name("team", n) for n in ("a", "c", "d", "e", OTHER)] == ["a", "c", OTHER, OTHER, OTHER]


def test_other_does_not_count_against_the_cap():
    a = admit({"tool": {OTHER}}, Caps(tool=1), {"tool": ["x"]})
    assert a.admitted == {"tool": ["x"]} and not a.overflow


def test_labels_are_independent():
    a = admit({}, Caps(team=1, model=2), {"team": ["t1", "t2"], "model": ["m1", "m2", "m3"]})
    assert a.overflow == {"team": 1, "model": 1}


@given(
    known=st.sets(st.text(min_size=1, max_size=3), max_size=10),
    batch=st.lists(st.text(min_size=1, max_size=3), max_size=40),
    cap=st.integers(min_value=1, max_value=12),
)
def test_never_more_distinct_names_than_the_cap(known, batch, cap):
    known = set(list(known - {OTHER})[:cap])
    a = admit({"model": known}, Caps(model=cap), {"model": batch})
    stored = {a.name("model", n) for n in batch} | known
    assert len(stored - {OTHER}) <= cap
    assert sum(1 for n in batch if a.name("model", n) == OTHER and n != OTHER) == a.overflow.get("model", 0)
    assert known <= stored


def test_top_names_keeps_the_heaviest():
    assert top_names({"a": 5, "b": 9, "c": 1, OTHER: 2}, 2) == {"a": "a", "b": "b", "c": OTHER, OTHER: OTHER}
