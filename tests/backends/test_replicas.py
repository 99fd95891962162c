"""The replica choice and down marks, on a clock the test moves."""

from __future__ import annotations

from proxy.backends.replicas import ReplicaSet


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ties_go_round_robin_and_the_least_outstanding_wins() -> None:
    replicas = ReplicaSet(["http://a/v1", "http://b/v1/", "http://c/v1"], retry_down_after_s=5)
    a, b, c = replicas.replicas
    assert b.url == "http://b/v1"
    assert b.root == "http://b"
    picks = [replicas.acquire() for _ in range(3)]
    assert picks == [a, b, c]
    replicas.release(b)
    assert replicas.acquire() is b
    replicas.release(a)
    replicas.release(c)
    assert {replicas.acquire(), replicas.acquire()} == {a, c}


def test_waiting_breaks_ties_in_outstanding() -> None:
    replicas = ReplicaSet(["http://a/v1", "http://b/v1"], retry_down_after_s=5)
    a, b = replicas.replicas
    a.waiting, b.waiting = 4, 1
    for _ in range(3):
        chosen = replicas.acquire()
        assert chosen is b
        replicas.release(chosen)


def test_down_replica_is_skipped_then_probed_once_then_up() -> None:
    clock = Clock()
    replicas = ReplicaSet(["http://a/v1", "http://b/v1"], retry_down_after_s=5, clock=clock)
    a, b = replicas.replicas
    replicas.mark_down(a)
    assert [replicas.acquire() for _ in range(3)] == [b, b, b]
    assert replicas.acquire(exclude=[b]) is None
    clock.now += 5
    for _ in range(3):
        replicas.release(b)
    probe = replicas.acquire(exclude=[b])
    assert probe is a
    assert a.probing
    assert replicas.acquire(exclude=[b]) is None  # one probe at a time
    replicas.mark_up(a)
    replicas.release(a)
    assert not a.probing
    assert a.down_until is None


def test_any_up_follows_the_down_marks() -> None:
    clock = Clock()
    replicas = ReplicaSet(["http://a/v1"], retry_down_after_s=5, clock=clock)
    assert replicas.any_up()
    replicas.mark_down(replicas.replicas[0])
    assert not replicas.any_up()
    clock.now += 5
    assert replicas.any_up()
