"""The replicas of one upstream model and the choice between them.

    replicas = ReplicaSet(["http://gpu1:8000/v1", "http://gpu2:8000/v1"], retry_down_after_s=10)
    replica = replicas.acquire()          # least outstanding requests; None when none is usable
    try: ... finally: replicas.release(replica)

Choice: among the usable replicas, the fewest requests outstanding from this process; ties go to
the lower ``waiting`` count (vLLM's queue depth, 0 when unknown), then the lower ``running``
count, then round robin.

Down-marking: a connection failure marks a replica down for ``retry_down_after_s``. After that
it is *half-open*: the next request that picks it is its probe (one probe at a time, so a dead
host does not take a burst of requests with it); a response of any kind marks it up, another
connection failure marks it down again. There is no background probe: a down replica costs
nothing until a request probes it, and the probing request falls over to the next replica.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field


@dataclass(eq=False, slots=True)
class Replica:
    """One upstream server. ``url`` is its API base (``http://host:port/v1``), ``chat_url`` its
    chat completions endpoint, ``root`` the server root (the base without a trailing ``/v1``),
    where vLLM serves ``/metrics``."""

    url: str
    chat_url: str = field(init=False)
    outstanding: int = 0
    waiting: int = 0
    running: int = 0
    down_until: float | None = None
    probing: bool = False

    def __post_init__(self) -> None:
        self.chat_url = f"{self.url}/chat/completions"

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def usable(self, now: float) -> bool:
        return self.down_until is None or (now >= self.down_until and not self.probing)


class ReplicaSet:
    """The replicas of one backend, with their in-flight counts and down marks."""

    def __init__(
        self,
        urls: Iterable[str],
        *,
        retry_down_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = tuple(Replica(url.rstrip("/")) for url in urls)
        if not self.replicas:
            raise ValueError("a replica set needs at least one URL")
        self._retry_down_after_s = retry_down_after_s
        self._clock = clock
        self._turn = 0

    def up(self) -> list[Replica]:
        """The replicas not marked down, or due for a retry."""
        now = self._clock()
        return [r for r in self.replicas if r.down_until is None or now >= r.down_until]

    def any_up(self) -> bool:
        return bool(self.up())

    def acquire(self, exclude: Collection[Replica] = ()) -> Replica | None:
        """The replica for the next request, counted as outstanding until ``release``."""
        now = self._clock()
        count = len(self.replicas)
        start = self._turn % count
        self._turn += 1
        best: Replica | None = None
        for offset in range(count):
            replica = self.replicas[(start + offset) % count]
            if replica in exclude or not replica.usable(now):
                continue
            if best is None or (replica.outstanding, replica.waiting, replica.running) < (
                best.outstanding,
                best.waiting,
                best.running,
            ):
                best = replica
        if best is None:
            return None
        if best.down_until is not None:
            best.probing = True
        best.outstanding += 1
        return best

    def release(self, replica: Replica) -> None:
        replica.outstanding -= 1
        replica.probing = False

    def mark_down(self, replica: Replica) -> None:
        replica.down_until = self._clock() + self._retry_down_after_s
        replica.probing = False

    def mark_up(self, replica: Replica) -> None:
        replica.down_until = None
        replica.probing = False
