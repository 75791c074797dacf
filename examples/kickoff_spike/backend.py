"""The shared backend (the database, the pricing engine), simulated on the virtual clock.

It has a real capacity: a fixed number of workers. A request that finds them all busy
waits in the backend's own queue, first come first served, and nothing limits that
queue. When requests arrive faster than the workers finish them, the queue, and with it
every request's latency, grows for as long as the overload lasts, as in an overloaded
database. The backend knows nothing about the guards in front of it.
"""

from __future__ import annotations

import anyio


class Backend:
    """A backend that works on ``workers`` requests at once and queues the rest.

    Args:
        workers: How many requests it works on at once.

    Attributes:
        peak_waiting: The most requests that ever waited in its queue at once, counted
            at every arrival (a sample once a second can miss a short burst).
    """

    def __init__(self, workers: int) -> None:
        self._workers = anyio.CapacityLimiter(workers)
        self._inside = 0  # working or waiting
        self.peak_waiting = 0

    async def handle(self, service_time: float) -> None:
        """Wait for a worker, then work on the request for ``service_time`` seconds."""
        self._inside += 1
        # The queue is longest just after an arrival: whatever is inside beyond the
        # workers waits (a freed worker goes straight to the next in line).
        self.peak_waiting = max(self.peak_waiting, self._inside - self.workers)
        try:
            async with self._workers:
                await anyio.sleep(service_time)
        finally:
            self._inside -= 1

    @property
    def workers(self) -> int:
        """How many requests it works on at once."""
        return int(self._workers.total_tokens)

    @property
    def busy(self) -> int:
        """Workers busy now."""
        return int(self._workers.borrowed_tokens)

    @property
    def waiting(self) -> int:
        """Requests waiting in the backend's queue for a worker."""
        return self._workers.statistics().tasks_waiting
