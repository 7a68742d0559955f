"""The lock table on its own: examples, then a hypothesis state machine that runs random sequences of
acquire / release / withdraw and checks the invariants after every step against a reference model."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from jobwarden.contract import LockMode
from jobwarden.server.core.errors import FailedPrecondition, LockNotHeld
from jobwarden.server.core.locks import Grant, LockTable

X, SH = LockMode.EXCLUSIVE, LockMode.SHARED


def holders_of(table: LockTable, resource: str) -> dict[str, LockMode]:
    for view in table.view():
        if view.resource == resource:
            return {h.holder: h.mode for h in view.holders}
    return {}


def waiters_of(table: LockTable, resource: str) -> list[str]:
    for view in table.view():
        if view.resource == resource:
            return [w.holder for w in view.waiters]
    return []


def test_shared_readers_together_exclusive_alone() -> None:
    table = LockTable()
    assert table.acquire("r1", {"a": SH}, now=0)
    assert table.acquire("r2", {"a": SH}, now=0)
    assert not table.acquire("w", {"a": X}, now=0)
    assert holders_of(table, "a") == {"r1": SH, "r2": SH}
    assert table.release("r1")[1] == []
    _, grants = table.release("r2")
    assert grants == [Grant("w", None)]
    assert holders_of(table, "a") == {"w": X}


def test_a_waiting_writer_is_not_overtaken_by_later_readers() -> None:
    table = LockTable()
    assert table.acquire("r1", {"a": SH}, now=0)
    assert not table.acquire("w", {"a": X}, now=0)
    # "a" is held SHARED, but a writer waits: a later reader queues behind it.
    assert not table.acquire("r2", {"a": SH}, now=0)
    assert waiters_of(table, "a") == ["w", "r2"]
    _, grants = table.release("r1")
    assert grants == [Grant("w", None)]
    _, grants = table.release("w")
    assert grants == [Grant("r2", None)]


def test_all_or_nothing_across_resources() -> None:
    table = LockTable()
    assert table.acquire("h", {"b": X}, now=0)
    assert not table.acquire("j", {"a": X, "b": X}, now=0, job_id="j")
    assert table.held_by("j") == {}, "it holds none of its locks while it waits for one"
    assert holders_of(table, "a") == {}
    _, grants = table.release("h")
    assert grants == [Grant("j", "j")]
    assert set(table.held_by("j")) == {"a", "b"}


def test_fifo_is_global_so_multi_resource_waiters_are_not_starved() -> None:
    table = LockTable()
    assert table.acquire("ha", {"a": X}, now=0)
    assert not table.acquire("both", {"a": X, "b": X}, now=0)
    # "b" is free, but the earlier waiter wants it: a later one on "b" alone waits behind it.
    assert not table.acquire("b-only", {"b": X}, now=0)
    _, grants = table.release("ha")
    assert grants == [Grant("both", None)]


def test_wait_false_changes_nothing() -> None:
    table = LockTable()
    assert table.acquire("h", {"a": X}, now=0)
    assert not table.acquire("other", {"a": SH, "b": X}, now=0, wait=False)
    assert table.waiter_count() == 0
    assert holders_of(table, "b") == {}


def test_releasing_what_one_does_not_hold_changes_nothing() -> None:
    table = LockTable()
    assert table.acquire("h", {"a": X, "b": X}, now=0)
    with pytest.raises(LockNotHeld, match="does not hold c"):
        table.release("h", ["a", "c"])
    assert set(table.held_by("h")) == {"a", "b"}
    with pytest.raises(LockNotHeld):
        table.release("nobody", ["a"])
    assert table.release("h", ["a"]) == (["a"], [])
    assert set(table.held_by("h")) == {"b"}


def test_a_holder_cannot_ask_twice() -> None:
    table = LockTable()
    assert table.acquire("h", {"a": X}, now=0)
    with pytest.raises(FailedPrecondition):
        table.acquire("h", {"b": X}, now=0)
    assert set(table.held_by("h")) == {"a"}


def test_withdraw_lets_later_waiters_in() -> None:
    table = LockTable()
    assert table.acquire("r", {"a": SH}, now=0)
    assert not table.acquire("w", {"a": X}, now=0)
    assert not table.acquire("r2", {"a": SH}, now=0)
    assert table.withdraw("w") == [Grant("r2", None)]
    assert holders_of(table, "a") == {"r": SH, "r2": SH}


# -- the state machine ---------------------------------------------------------------------------

RESOURCES = ["a", "b", "c", "d"]
HOLDERS = [f"h{i}" for i in range(7)]
requests_strategy = st.dictionaries(
    st.sampled_from(RESOURCES), st.sampled_from([SH, X]), min_size=1, max_size=3
)


def _conflicts(a: LockMode, b: LockMode) -> bool:
    return a is X or b is X


@dataclass
class Model:
    """The rules written as plainly as possible: waiters in arrival order; after every change, grant each
    waiter (oldest first) that conflicts with no holder and no earlier waiter, until nothing moves."""

    held: dict[str, dict[str, LockMode]] = field(default_factory=dict)
    waiting: list[tuple[str, dict[str, LockMode]]] = field(default_factory=list)

    def blocked(self, index: int) -> bool:
        _, requests = self.waiting[index]
        for resource, mode in requests.items():
            for locks in self.held.values():
                if resource in locks and _conflicts(locks[resource], mode):
                    return True
            for _, earlier in self.waiting[:index]:
                if resource in earlier and _conflicts(earlier[resource], mode):
                    return True
        return False

    def settle(self) -> list[str]:
        granted = []
        moved = True
        while moved:
            moved = False
            for index in range(len(self.waiting)):
                if not self.blocked(index):
                    holder, requests = self.waiting.pop(index)
                    self.held[holder] = dict(requests)
                    granted.append(holder)
                    moved = True
                    break
        return granted


class LockTableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = LockTable()
        self.model = Model()
        self.clock = 0.0

    def _busy(self) -> set[str]:
        return set(self.model.held) | {h for h, _ in self.model.waiting}

    def _snapshot(self) -> object:
        return [
            (v.resource, [(h.holder, h.mode) for h in v.holders], [(w.holder, w.mode) for w in v.waiters])
            for v in self.table.view()
        ]

    @rule(holder=st.sampled_from(HOLDERS), requests=requests_strategy, wait=st.booleans())
    def acquire(self, holder: str, requests: dict[str, LockMode], wait: bool) -> None:
        self.clock += 1
        if holder in self._busy():
            before = self._snapshot()
            with pytest.raises(FailedPrecondition):
                self.table.acquire(holder, requests, now=self.clock, wait=wait)
            assert self._snapshot() == before
            return
        self.model.waiting.append((holder, dict(requests)))
        expected_now = not self.model.blocked(len(self.model.waiting) - 1)
        got = self.table.acquire(holder, requests, now=self.clock, wait=wait)
        assert got == expected_now
        if expected_now:
            self.model.waiting.pop()
            self.model.held[holder] = dict(requests)
        elif not wait:
            self.model.waiting.pop()
        assert self.model.settle() == [], "an acquire never lets anyone else in"

    @precondition(lambda self: self.model.held)
    @rule(data=st.data())
    def release_all(self, data: st.DataObject) -> None:
        holder = data.draw(st.sampled_from(sorted(self.model.held)))
        released, grants = self.table.release(holder)
        assert set(released) == set(self.model.held.pop(holder))
        assert [g.holder for g in grants] == self.model.settle(), "granted in FIFO order"

    @precondition(lambda self: self.model.held)
    @rule(data=st.data())
    def release_some(self, data: st.DataObject) -> None:
        holder = data.draw(st.sampled_from(sorted(self.model.held)))
        mine = sorted(self.model.held[holder])
        some = data.draw(st.lists(st.sampled_from(mine), min_size=1, unique=True))
        released, grants = self.table.release(holder, some)
        assert sorted(released) == sorted(some)
        for resource in some:
            del self.model.held[holder][resource]
        if not self.model.held[holder]:
            del self.model.held[holder]
        assert [g.holder for g in grants] == self.model.settle()

    @rule(holder=st.sampled_from(HOLDERS), resource=st.sampled_from(RESOURCES))
    def release_not_held(self, holder: str, resource: str) -> None:
        if resource in self.model.held.get(holder, {}):
            return
        before = self._snapshot()
        with pytest.raises(LockNotHeld):
            self.table.release(holder, [resource])
        assert self._snapshot() == before

    @precondition(lambda self: self.model.waiting)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        holder = data.draw(st.sampled_from([h for h, _ in self.model.waiting]))
        grants = self.table.withdraw(holder)
        self.model.waiting = [(h, r) for h, r in self.model.waiting if h != holder]
        assert [g.holder for g in grants] == self.model.settle()

    # -- invariants, after every step --

    @invariant()
    def exclusive_means_alone(self) -> None:
        for view in self.table.view():
            modes = [h.mode for h in view.holders]
            if X in modes:
                assert len(modes) == 1, f"{view.resource} held EXCLUSIVE with others: {view.holders}"

    @invariant()
    def all_or_nothing(self) -> None:
        for holder in HOLDERS:
            held = self.table.held_by(holder)
            waiting = self.table.is_waiting(holder)
            assert not (held and waiting), f"{holder} holds some locks while waiting for others"
            if held:
                assert {r: h.mode for r, h in held.items()} == self.model.held[holder]

    @invariant()
    def matches_the_model(self) -> None:
        for resource in RESOURCES:
            expected = {h: locks[resource] for h, locks in self.model.held.items() if resource in locks}
            assert holders_of(self.table, resource) == expected
            fifo = [h for h, r in self.model.waiting if resource in r]
            assert waiters_of(self.table, resource) == fifo, "waiters in arrival order"
        assert self.table.waiter_count() == len(self.model.waiting)

    @invariant()
    def no_grantable_waiter_left_waiting(self) -> None:
        for index in range(len(self.model.waiting)):
            assert self.model.blocked(index), f"{self.model.waiting[index][0]} could have its locks"


LockTableMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_lock_table_invariants = LockTableMachine.TestCase
