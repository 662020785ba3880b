"""The lifecycle an engine runs with (remediator/engine/store/lifecycle.py): people told through the outbox, and
the hooks that hear each close: the metrics (where this process has them) and the circuit breaker's bookkeeping
after a real run. Whoever writes incident states (serve, its ingester process, a CLI command) builds it here."""
from __future__ import annotations

from collections.abc import Sequence

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.decide import breaker
from remediator.engine.outbound.metrics import Metrics
from remediator.engine.outbound.notify import notice
from remediator.engine.settings import Settings
from remediator.engine.store.lifecycle import Lifecycle, OnClose

__all__ = ["lifecycle"]


def lifecycle(settings: Settings, inventory: Inventory | None = None, metrics: Metrics | None = None,
              also: Sequence[OnClose] = ()) -> Lifecycle:
    """`inventory`: the host groups the breaker learns per (None: per entry and fleet-wide only); `metrics`: None in
    a process with no /metrics to count for; `also`: further hooks (the ingester hands its closes to serve)."""
    tell = notice(settings)
    hooks: list[OnClose] = []
    if metrics is not None:
        hooks.append(lambda session, inc, state, seconds_open: metrics.count_close(state.value, seconds_open))
    hooks += also
    opened = metrics.breaker_opened.labels if metrics is not None else None
    hooks.append(breaker.on_close(settings.section(breaker.Trips), inventory, tell,
                                  opened=(lambda scope: opened(scope).inc()) if opened is not None else None))
    return Lifecycle(notice=tell, on_close=hooks)
