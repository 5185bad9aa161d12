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
from pathlib import Path
from typing import Any

from server.batcher import MicroBatcher
from server.config import ServerConfig
from server.feedback import Outcomes
from server.metrics import ServerMetrics
from server.model import LoadedModel, load, resolve
from server.prediction_log import (
    FEEDBACK,
    PREDICTIONS,
    PredictionLog,
    count_lines,
    file_records,
    log_files,
    read_records,
)

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
        self._loaded = asyncio.Event()
        self.outcomes = Outcomes(
            None, None, max_rows=config.feedback_rows, window=config.quality_window
        )
        self.log: PredictionLog | None = None
        if config.log_dir:
            self.log = PredictionLog(
                Path(config.log_dir),
                sample=config.log_sample,
                file_bytes=config.log_file_bytes,
                max_bytes=config.log_max_bytes,
                on_written=lambda kind, n: metrics.log_rows.labels(kind=kind).inc(n),
                on_dropped=lambda reason, n: metrics.log_dropped.labels(reason=reason).inc(n),
            )

    async def start(self) -> None:
        """Load in the background so /health answers (and /ready says 503) while it loads."""
        if self.log is not None:
            self.log.start()
            # What earlier servers of the deployment answered (before a switch or a restart):
            # labels for those rows are judged against the version that made them.
            self._tasks.append(asyncio.create_task(self._restore(), name="restore-log"))
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
        if self.log is not None:
            await asyncio.to_thread(self.log.stop)

    # ------------------------------------------------------------ what was answered

    def answered(
        self,
        request_id: str,
        model: LoadedModel,
        rows: list[list[Any]],
        predictions: list[Any],
        probabilities: list[Any] | None = None,
    ) -> None:
        """On the request path, O(1) work: remember the answer for labels, queue it for the
        log (written by the log's thread)."""
        version = model.identity.version
        self.outcomes.remember(request_id, version, predictions)
        if self.log is not None:
            columns = model.schema.names if model.schema else None
            self.log.offer_predictions(
                request_id,
                model.identity.name,
                version,
                columns,
                rows,
                predictions,
                probabilities=probabilities,
                classes=model.classes,
            )

    def refresh_quality(self) -> None:
        """Set the quality and coverage gauges from the labels so far (at each scrape: a label
        shows by the next one). A failure here costs these gauges, never the scrape."""
        try:
            self._refresh_quality()
        except Exception:
            log.exception("quality gauges not updated")

    def _refresh_quality(self) -> None:
        m, window = self.metrics, str(self.config.quality_window)
        m.model_quality.clear()
        for version, figures in self.outcomes.quality().items():
            for metric, value in figures.items():
                labels = {"model_version": version, "metric": metric, "window": window}
                m.model_quality.labels(**labels).set(value)
        m.labelled_rows.clear()
        for version, rows in self.outcomes.window_sizes().items():
            m.labelled_rows.labels(model_version=version).set(rows)
        m.label_coverage.clear()
        for version, ratio in self.outcomes.coverage().items():
            m.label_coverage.labels(model_version=version).set(ratio)
        m.log_degraded.set(1 if self.log is not None and self.log.problem else 0)

    async def _restore(self) -> None:
        await self._loaded.wait()  # labels are judged by the model's target type
        try:
            await asyncio.to_thread(self._restore_from_log)
        except Exception:  # an unreadable log costs the labels of earlier rows, nothing else
            log.exception("could not read the prediction log back")

    def _restore_from_log(self) -> None:
        assert self.log is not None
        directory = self.log.directory
        # The newest files that hold about as many rows as are remembered, oldest first.
        chosen: list[Path] = []
        rows = 0
        for path in reversed(log_files(directory, PREDICTIONS)):
            if rows >= self.config.feedback_rows:
                break
            chosen.insert(0, path)
            rows += count_lines(path)
        grouped: dict[str, tuple[str, dict[int, Any]]] = {}
        for path in chosen:
            for record in file_records(path):
                rid, index = record.get("request_id"), record.get("index")
                if isinstance(rid, str) and isinstance(index, int):
                    version, answers = grouped.setdefault(rid, (str(record.get("version")), {}))
                    answers[index] = record.get("prediction")
        # The labels given to them, the later one winning, applied with them at once: a row
        # never shows unlabelled between its prediction and its label being read back.
        given: dict[str, dict[int, Any]] = {}
        stamps: dict[tuple[str, int], float] = {}
        labels = 0
        for record in read_records(directory, FEEDBACK):
            rid, index = record.get("request_id"), record.get("index")
            if rid in grouped and isinstance(index, int) and "truth" in record:
                # The later label wins by its time (several servers write files of their own).
                raw = record.get("ts")
                ts = float(raw) if isinstance(raw, int | float) else 0.0
                if ts >= stamps.get((rid, index), float("-inf")):
                    stamps[(rid, index)] = ts
                    given.setdefault(rid, {})[index] = record["truth"]
                labels += 1
        restored = 0
        for rid, (version, answers) in reversed(grouped.items()):  # newest first: see below
            if self.outcomes.known(rid):
                continue  # answered again since: the newest answer counts
            predictions = [answers.get(i) for i in range(max(answers) + 1)]
            self.outcomes.remember_earlier(rid, version, predictions, given.get(rid, {}))
            restored += 1
        if restored or labels:
            log.info("from the prediction log: %d requests, %d labels", restored, labels)

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
            self._loaded.set()
            i = model.identity
            self.outcomes.task, self.outcomes.classes = model.task, model.classes
            self.metrics.model_validation.clear()
            for metric, value in model.validation.items():
                self.metrics.model_validation.labels(model_version=i.version, metric=metric).set(
                    value
                )
            self.metrics.set_model(i.name, i.version, i.run_id)
            self.metrics.withdraw_drift()  # the old model's features are not this one's
            log.info("serving %s version %s (run %s)", i.name or i.source, i.version, i.run_id)
        if old is not None:
            await old.batcher.close()  # in-flight requests finish on the old model
        return model, old.model if old else None

    def _batcher_for(self, model: LoadedModel) -> MicroBatcher:
        columns = model.schema.names if model.schema else None

        def predict(rows: list[list[Any]]) -> list[Any]:
            # (prediction, class probabilities or None) per row: the log keeps both.
            predictions, proba = model.predict_scored(columns, rows)
            self.metrics.count_predictions(predictions)
            each: list[Any] = list(proba) if proba is not None else [None] * len(predictions)
            return list(zip(predictions, each, strict=True))

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
