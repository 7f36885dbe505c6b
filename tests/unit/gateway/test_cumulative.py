"""What only the memory backend has: its bound. The contract of both backends: tests/integration/test_gateway_cumulative.py."""

from aiyield.gateway.cumulative import Delta, MemoryCumulativeState


async def test_memory_state_forgets_the_least_recently_updated_series_beyond_its_bound() -> None:
    state = MemoryCumulativeState(max_series=2)
    await state.delta("a", 0, 1, 10)
    await state.delta("b", 0, 1, 10)
    await state.delta("a", 0, 2, 11)
    await state.delta("c", 0, 1, 10)  # evicts b, the least recently updated
    assert await state.delta("a", 0, 3, 12) == Delta(1)
    assert await state.delta("b", 0, 2, 15) == Delta(15)
