"""Placeholder until the recorder lands."""


class Trace:
    def at(self, elapsed: float) -> tuple[float, str | None]:
        raise NotImplementedError

    def arrivals(self) -> tuple[float, ...]:
        raise NotImplementedError

    span: float = 0.0
