"""The simulated organisation: its farming team earns nothing extra under contract v3, and its extra claims show."""

import msgspec

from aiyield.core import crediting
from aiyield.core.crediting import MemoryJoinState, Policy
from aiyield.core.events import Event
from aiyield.simulate import FARM, Organisation

from tests.unit.core.crediting_model import totals

T0 = 1_767_225_600.0


def test_the_farming_team_earns_at_most_one_per_deployment_and_its_extra_claims_are_contested():
    org = Organisation(seed=3)
    raw = [e for second in range(3000) for e in org.tick(T0 + second, 40)]
    events = [msgspec.convert(e, Event) for e in raw if e["type"] in ("task", "push", "deployment")]
    state = MemoryJoinState()
    result = totals(state.apply(events, Policy()))
    farm_tasks = [e for e in events if e.type == "task" and e.team == FARM and e.status == "completed"]
    farm_deploys = {ref for ref in state.deployments if ref[0] == "acme/ops-tools" and state.deployments[ref].fact}
    assert farm_tasks and farm_deploys
    credited = {ref: agg for ref, agg in state.credits.items() if ref[0] == FARM}
    assert credited
    for (team, repo, deploy_id), agg in credited.items():
        survived, retracted = crediting.credit_outputs(agg, crediting.rollback_ts(state.deployments[(repo, deploy_id)], Policy()), Policy())
        assert survived + sum(a for _ts, _r, a in retracted) <= Policy().amount(10)
    # Every trailer claim came a second after the piece claiming the same commit: contested, one each.
    trailers = sum(1 for e in farm_tasks if "-trailer-" in e.task_id)
    assert sum(v for k, v in result.items() if k[0] == "contested" and k[1] == FARM) == trailers
    # Cut in pieces or not, its credit is what one task per change would earn: at most one per deployment.
    farm_credit = sum(v for k, v in result.items() if k[0] == "credit" and k[1] == FARM)
    assert 0 < farm_credit <= len(farm_deploys) * Policy().amount(10)
