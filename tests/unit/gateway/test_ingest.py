"""Gateway.ingest: validation, scopes, short answers and batched dead letters, without a broker.

The publisher here is a recording double: what reaches a real Kafka is tested in tests/integration/test_gateway.py.
"""

from __future__ import annotations

import time

import msgspec

from aiyield.core.org import Org, Team
from aiyield.gateway.auth import Principal, Scope
from aiyield.gateway.ingest import MAX_LISTED, Gateway
from aiyield.settings import Settings

NOW = 2_000_000_000.0


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: dict[str, list[bytes]] = {}

    async def publish_async(self, topic: str, values, keys=None) -> None:
        self.sent.setdefault(topic, []).extend(values)


def gateway(settings: Settings = Settings()) -> tuple[Gateway, RecordingPublisher]:
    publisher = RecordingPublisher()
    return Gateway(settings, publisher, clock=lambda: NOW), publisher  # type: ignore[arg-type]


def published(gw: Gateway, publisher: RecordingPublisher) -> list[dict]:
    return [e for v in publisher.sent.get(gw.settings.events_topic, []) for e in msgspec.json.decode(v)["events"]]


def token(i: int, team: str = "web") -> dict:
    return {"type": "token", "id": f"e{i}", "ts": NOW - 1, "team": team, "tool": "t", "model": "m",
            "input_tokens": 1, "output_tokens": 1}


async def test_many_bad_items_give_a_short_answer_and_few_dead_letters() -> None:
    gw, publisher = gateway()
    items = [{}] * 25_000 + [token(1)]
    result = await gw.ingest(items, "gateway", Principal("anonymous", trusted=True))
    assert result.accepted == 1 and result.rejected_count == 25_000
    assert [r.index for r in result.rejected] == list(range(MAX_LISTED))
    answer = result.answer()
    assert len(answer["rejected"]) == MAX_LISTED and answer["rejected_count"] == 25_000
    dead = [msgspec.json.decode(v) for v in publisher.sent[gw.settings.dlq_topic]]
    assert len(dead) == 25  # a thousand items per message
    assert sum(len(m["rejected"]) for m in dead) == 25_000
    assert len({m["id"] for m in dead}) == 25  # distinct message ids, so none is deduplicated away
    assert sorted(i["index"] for m in dead for i in m["rejected"]) == list(range(25_000))


async def test_a_scoped_token_writes_only_inside_its_scope() -> None:
    gw, publisher = gateway()
    scoped = Principal("token-1", Scope(frozenset({"web"})))
    items = [token(1), token(2, team="payments"), {"bad": 1}, token(3)]
    result = await gw.ingest(items, "gateway", scoped)
    assert (result.accepted, result.rejected_count, result.out_of_scope) == (2, 2, 1)
    assert [r.index for r in result.rejected] == [1, 2]
    assert "outside this ingest token's scope" in result.rejected[0].error.reason
    assert not result.forbidden
    published = [e["id"] for v in publisher.sent[gw.settings.events_topic] for e in msgspec.json.decode(v)["events"]]
    assert published == ["e1", "e3"]

    nothing = await gw.ingest([token(4, team="payments")], "gateway", scoped)
    assert nothing.forbidden and nothing.accepted == 0


async def test_an_unscoped_principal_writes_everything_valid() -> None:
    gw, _ = gateway()
    result = await gw.ingest([token(1, team="anyone")], "gateway", Principal("token-1", trusted=True))
    assert result.accepted == 1 and not result.forbidden


def task(i: int, team: str, repo: str = "shop/api", **kw) -> dict:
    return {"type": "task", "id": f"t{i}", "ts": NOW - 7200, "task_id": f"task-{i}", "team": team, "tool": "t",
            "status": "completed", "repo": repo, "commits": [f"{i:040x}"], **kw}


async def test_a_repo_scoped_token_writes_tasks_only_for_the_teams_owning_the_repo() -> None:
    org = Org({"web": Team(repos=("shop/*",)), "payments": Team(repos=("bank/*",))})
    gw, publisher = gateway(Settings(org=org))
    repo_only = Principal("token-2", Scope(repos=("shop/*", "bank/*")))
    items = [task(1, "web"), task(2, "payments"), task(3, "payments", repo="bank/core"), task(4, "web", "Bank/Core")]
    result = await gw.ingest(items, "gateway", repo_only)
    assert (result.accepted, result.out_of_scope) == (2, 2) and [r.index for r in result.rejected] == [1, 3]
    assert "repos in the organisation file match 'shop/api' (web)" in result.rejected[0].error.reason
    assert "match 'bank/core' (payments)" in result.rejected[1].error.reason
    assert [e["id"] for e in published(gw, publisher)] == ["t1", "t3"]
    nothing = await gw.ingest([task(5, "payments")], "gateway", repo_only)
    assert nothing.forbidden


async def test_untrusted_senders_are_stamped_with_their_arrival_overwriting_their_own() -> None:
    """Contract v3 §2 "Rank time": scoped tokens and webhooks carry the gateway's receive time; a sender's own
    `arrival` (here one that would date its claim back two hours) is replaced. Trusted senders keep theirs."""
    gw, publisher = gateway()
    items = [task(1, "web"), task(2, "web", arrival=NOW - 7200), token(3)]
    for principal in (Principal("token-1", Scope(frozenset({"web"}))), Principal("github"), Principal("gitlab")):
        publisher.sent.clear()
        assert (await gw.ingest(items, "gateway", principal)).accepted == 3
        assert [e.get("arrival") for e in published(gw, publisher)] == [NOW, NOW, NOW], principal
    publisher.sent.clear()
    assert (await gw.ingest(items, "gateway", Principal("token-2", trusted=True))).accepted == 3
    assert [e.get("arrival") for e in published(gw, publisher)] == [None, NOW - 7200, None]


async def test_a_scoped_senders_out_of_scope_items_are_dead_lettered_with_their_arrival() -> None:
    gw, publisher = gateway()
    result = await gw.ingest([task(1, "payments")], "gateway", Principal("token-1", Scope(frozenset({"web"}))))
    assert result.forbidden
    (letter,) = [msgspec.json.decode(v) for v in publisher.sent[gw.settings.dlq_topic]]
    (item,) = letter["rejected"]
    assert item["raw"]["arrival"] == NOW and "contract v3 §4" in item["reason"]
