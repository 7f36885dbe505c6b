"""Cardinality guard: caps on distinct teams, tools and models; names beyond a cap are folded into `other`.

A flood of made-up names (a buggy plugin, a hostile client with a valid token) must not create unbounded Redis
fields and Prometheus series. Pure: the caller supplies the names already admitted (`known`) and persists the
ones this function admits.

Rules, per label (team, tool, model), in this order:
  - a known name is kept;
  - `other` is always kept (it is the fold);
  - a new name is admitted while known + admitted < cap, in the order the batch presents them (first come, first
    admitted: a name, once admitted, stays, so series never flip between a name and `other`);
  - every other name maps to `other`, and each occurrence is counted in `overflow[label]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

OTHER = "other"
LABELS = ("team", "tool", "model")


@dataclass(frozen=True)
class Caps:
    """Distinct names allowed per label (AIYIELD_MAX_TEAMS / _TOOLS / _MODELS), `other` not counted."""

    team: int = 500
    tool: int = 100
    model: int = 500

    def of(self, label: str) -> int:
        return getattr(self, label)


@dataclass
class Admission:
    #: label -> {name as sent -> name to store}; names not listed are stored as sent (known ones).
    rename: dict[str, dict[str, str]] = field(default_factory=dict)
    #: label -> names admitted by this batch (to add to the persisted known set, atomically with the batch).
    admitted: dict[str, list[str]] = field(default_factory=dict)
    #: label -> occurrences folded into `other`.
    overflow: dict[str, int] = field(default_factory=dict)

    def name(self, label: str, value: str) -> str:
        return self.rename.get(label, {}).get(value, value)


def admit(known: Mapping[str, Iterable[str]], caps: Caps, batch: Mapping[str, Iterable[str]]) -> Admission:
    """Decide, for one batch, which names are stored and which are folded into `other`.

    known: label -> names already admitted; batch: label -> names in the order the batch's events carry them
    (repeats included: each folded occurrence counts once in `overflow`).
    """
    out = Admission()
    for label, names in batch.items():
        have = set(known.get(label, ())) - {OTHER}
        cap = caps.of(label)
        rename: dict[str, str] = {}
        admitted: list[str] = []
        folded = 0
        for name in names:
            if name in have or name == OTHER:
                continue
            if name in rename:
                folded += 1
                continue
            if len(have) < cap:
                have.add(name)
                admitted.append(name)
            else:
                rename[name] = OTHER
                folded += 1
        if rename:
            out.rename[label] = rename
        if admitted:
            out.admitted[label] = admitted
        if folded:
            out.overflow[label] = folded
    return out


def top_names(weights: Mapping[str, float], cap: int) -> dict[str, str]:
    """Read-time guard: keep the `cap` names of largest weight (ties by name), fold the rest; name -> shown name."""
    ranked = sorted((n for n in weights if n != OTHER), key=lambda n: (-weights[n], n))
    keep = set(ranked[:cap])
    return {n: (n if n in keep or n == OTHER else OTHER) for n in weights}
