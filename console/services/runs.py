"""Experiments, runs and training against the session's tracking server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from console.services.session import Session

if TYPE_CHECKING:
    from backends.records import (
        Experiment,
        ModelVersion,
        ProjectParameter,
        RunComparison,
        RunDetail,
        RunListing,
        TrainingOutcome,
    )

RUNS_PAGE = 200  # runs per page: a screenful many times over, and 50 pages make 10,000


class MlflowRuns:
    """The runs capability over the tracking server (its REST API, and the local run index)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def uri(self) -> str:
        return self.session.settings.tracking_uri

    def list_experiments(self) -> list[Experiment]:
        from backends.mlflow import runs

        return runs.list_experiments(self.uri)

    def list_runs(
        self,
        experiment: str,
        filter_string: str,
        order_by: list[str],
        offset: int = 0,
        quick: bool = False,
    ) -> RunListing:
        from backends.mlflow import runs

        return runs.list_runs(
            self.uri,
            experiment,
            filter_string=filter_string,
            order_by=order_by,
            max_results=RUNS_PAGE,
            offset=offset,
            # A 10,000-run full sync takes seconds: sync_runs does it in the background. A later
            # page comes from the snapshot the first page saw.
            sync=("later" if quick else "defer") if offset == 0 else "none",
        )

    def sync_runs(self, experiment: str) -> None:
        from backends.mlflow import runs

        runs.sync_runs(self.uri, experiment)

    def show_run(self, run_id: str) -> RunDetail:
        from backends.mlflow import runs

        return runs.show_run(self.uri, run_id)

    def compare_runs(self, run_ids: list[str]) -> RunComparison:
        from backends.mlflow import compare

        return compare.compare_runs(self.uri, run_ids)

    def project_parameters(self, project: str) -> list[ProjectParameter]:
        from backends.mlflow.training import project_parameters

        return project_parameters(Path(project))

    def train(
        self, project: str, params: dict[str, str], on_line: Callable[[str], object]
    ) -> TrainingOutcome:
        from backends.mlflow.training import Training
        from backends.records import TrainingOutcome

        job = Training(Path(project), self.uri, params=params)
        job.start()
        try:
            for line in job.lines():
                on_line(line)
        finally:
            code = job.wait(timeout=60)
            status = job.finish(code)
        return TrainingOutcome(job.run_id, status, code, str(job.log_path))

    def register(self, run_id: str, name: str) -> ModelVersion:
        from backends.mlflow.training import register_model

        return register_model(self.uri, run_id, name)
