"""The serving state behind the routes: the current model and its batcher, swapped atomically.

A reload loads the new model first, then swaps one reference; requests that already hold the
old slot finish on it (its batcher drains before it is closed), new requests use the new one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.batcher import MicroBatcher
from server.config import ServerConfig
from server.metrics import ServerMetrics
from server.model import LoadedModel, load, resolve

log = logging.getLogger("server.runtime")


@dataclass(frozen=True)
class Slot:
    model: LoadedModel
    batcher: MicroBatcher


class Runtime:
    def __init__(self, config: ServerConfig, metrics: ServerMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.slot: Slot | None = None
        self.load_error: str | None = None
        self._reload_lock = asyncio.Lock()
        # Called when the first load fails: a server that can never serve should exit (and say
        # why) rather than sit at 503 — a container restarts, an operator sees the error.
        self.on_fatal: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        """Load in the background so /health answers (and /ready says 503) while it loads."""
        self._tasks.append(asyncio.create_task(self._initial_load(), name="initial-load"))
        self._tasks.append(asyncio.create_task(self._drift_loop(), name="drift"))
        self._tasks.append(asyncio.create_task(self._watch_loop_lag(), name="loop-lag"))
        if self.config.follow_alias:
            self._tasks.append(asyncio.create_task(self._follow_loop(), name="follow-alias"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.slot is not None:
            await self.slot.batcher.close()

    async def _initial_load(self) -> None:
        try:
            await self.reload()
        except Exception as exc:
            self.load_error = f"{exc.__class__.__name__}: {exc}"
            log.error("model failed to load: %s", self.load_error)
            if self.on_fatal is not None:
                self.on_fatal()

    async def reload(self) -> tuple[LoadedModel, LoadedModel | None]:
        """Resolve the reference again, load, swap; returns (new, old)."""
        async with self._reload_lock:
            ref = self.config.model_ref
            resolved = await asyncio.to_thread(resolve, ref)
            model = await asyncio.to_thread(load, resolved, self.config.drift_window)
            # What loading left (mlflow, sklearn, the model: hundreds of thousands of objects)
            # lives until the next reload: out of the collector's way, a full collection that a
            # large request triggers walks that request's objects only, not all of them (it
            # held the loop >100 ms at the size limit). Unfrozen first, so that a replaced
            # model's cycles are collected; the one pause is the reload's.
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            batcher = self._batcher_for(model)
            batcher.start()
            old = self.slot
            self.slot = Slot(model, batcher)
            self.load_error = None
            i = model.identity
            self.metrics.set_model(i.name, i.version, i.run_id)
            self.metrics.withdraw_drift()  # the old model's features are not this one's
            log.info("serving %s version %s (run %s)", i.name or i.source, i.version, i.run_id)
        if old is not None:
            await old.batcher.close()  # in-flight requests finish on the old model
        return model, old.model if old else None

    def _batcher_for(self, model: LoadedModel) -> MicroBatcher:
        columns = model.schema.names if model.schema else None

        def predict(rows: list[list[Any]]) -> list[Any]:
            predictions = model.predict(columns, rows)
            self.metrics.count_predictions(predictions)
            return predictions

        cfg = self.config
        return MicroBatcher(
            predict,
            max_batch_rows=cfg.max_batch_rows,
            max_wait=cfg.max_wait_ms / 1000.0,
            max_queue_rows=cfg.max_queue_rows,
            timeout=cfg.request_timeout,
            on_batch=self.metrics.batch_size.observe,
        )

    async def _drift_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.drift_interval)
            try:
                await self.update_drift()
            except Exception:  # one bad computation must not end drift for the process
                log.exception(
                    "drift update failed; trying again in %gs", self.config.drift_interval
                )

    async def update_drift(self, *, force: bool = False) -> None:
        slot = self.slot
        if slot is None or slot.model.drift is None:
            return
        drift = slot.model.drift
        age = drift.seconds_since_input()
        self.metrics.drift_window_rows.set(drift.rows_in_window)
        self.metrics.drift_window_age.set(age if age is not None else float("nan"))
        if age is not None and age > self.config.drift_stale_after:
            # No traffic: yesterday's figures are not today's drift. Withdraw them, so an
            # alert on them resolves instead of firing forever; /version says why.
            if self.metrics.withdraw_drift():
                log.info("no inputs for %.0fs: drift gauges withdrawn", age)
            drift.stale = True
            return
        drift.stale = False
        results = await asyncio.to_thread(drift.compute, force=force)
        for r in results or []:
            self.metrics.feature_psi.labels(feature=r.feature).set(r.psi)
            self.metrics.feature_ks.labels(feature=r.feature).set(r.ks)
            self.metrics.feature_ks_pvalue.labels(feature=r.feature).set(r.ks_pvalue)

    async def _watch_loop_lag(self, every: float = 0.05) -> None:
        """How late the event loop wakes a sleeper: the time something held it (or the host
        was starved). /health and /metrics answer within this much of asking."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(every)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - asked - every))

    async def _follow_loop(self) -> None:
        """Reload when the alias we serve moves to another version (follow-alias deployments)."""
        while True:
            await asyncio.sleep(self.config.follow_interval)
            slot = self.slot
            if slot is None or not slot.model.identity.alias:
                continue
            try:
                resolved = await asyncio.to_thread(resolve, self.config.model_ref)
                if resolved.identity.version != slot.model.identity.version:
                    await self.reload()
            except Exception as exc:  # the registry may be briefly unreachable; keep serving
                log.warning("alias check failed: %s", exc)
