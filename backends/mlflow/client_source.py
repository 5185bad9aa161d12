"""Runs of a local store (``sqlite:///mlflow.db``, ``file:``), which has no REST API: read with an
``MlflowClient`` (imported inside, never at module import) and given the REST API's JSON shape."""

from __future__ import annotations

from typing import Any

from backends.errors import NotFound
from backends.mlflow.run_source import Json

__all__ = ["ClientSource", "run_json"]


class ClientSource:
    """A local store (sqlite, file) through ``MlflowClient``, answering in the REST shape."""

    def __init__(self, uri: str, client: Any = None) -> None:
        self.uri = uri
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from backends.mlflow.client import connect

            self._client = connect(self.uri)
        return self._client

    def experiment(self, name_or_id: str) -> Json:
        from backends.mlflow.client import translate_errors

        with translate_errors(self.uri):
            found = self.client.get_experiment_by_name(name_or_id)
            if found is None and name_or_id.isdigit():
                found = self.client.get_experiment(name_or_id)
        if found is None:
            raise NotFound(f"no experiment named {name_or_id!r}")
        return _experiment_json(found)

    def experiment_by_id(self, experiment_id: str) -> Json:
        from backends.mlflow.client import translate_errors

        with translate_errors(self.uri):
            return _experiment_json(self.client.get_experiment(experiment_id))

    def experiments(self) -> list[Json]:
        from backends.mlflow.client import translate_errors

        found: list[Json] = []
        token: str | None = None
        with translate_errors(self.uri):
            while True:
                page = self.client.search_experiments(
                    max_results=1000, order_by=["last_update_time DESC"], page_token=token
                )
                found.extend(_experiment_json(e) for e in page)
                token = page.token or None
                if not token:
                    return found

    def search(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        order_by: list[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view: str = "active",
    ) -> tuple[list[Json], str | None]:
        from mlflow.entities import ViewType

        from backends.mlflow.client import translate_errors

        view_type = {"active": ViewType.ACTIVE_ONLY, "deleted": ViewType.DELETED_ONLY}
        with translate_errors(self.uri):
            page = self.client.search_runs(
                experiment_ids,
                filter_string=filter_string,
                run_view_type=view_type.get(view, ViewType.ALL),
                max_results=max_results,
                order_by=list(order_by or []),
                page_token=page_token,
            )
        return [run_json(r) for r in page], page.token or None

    def get_run(self, run_id: str) -> Json:
        from backends.mlflow.client import translate_errors

        with translate_errors(self.uri):
            return run_json(self.client.get_run(run_id))

    def metric_history(self, run_id: str, key: str) -> list[Json]:
        from backends.mlflow.client import translate_errors

        with translate_errors(self.uri):
            history = self.client.get_metric_history(run_id, key)
        return [
            {"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
            for m in history
        ]

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Json]:
        from backends.mlflow.client import translate_errors

        with translate_errors(self.uri):
            files = self.client.list_artifacts(run_id, path)
        return [{"path": f.path, "is_dir": f.is_dir, "file_size": f.file_size} for f in files]

    def logged_model(self, model_id: str) -> Json | None:
        from backends.mlflow.client import translate_errors

        try:
            with translate_errors(self.uri):
                model = self.client.get_logged_model(model_id)
        except NotFound:
            return None
        return {
            "info": {
                "model_id": model.model_id,
                "name": model.name,
                "artifact_uri": model.artifact_location,
                "source_run_id": model.source_run_id,
            },
            "flavors": [],
        }

    def close(self) -> None:
        pass


def _experiment_json(experiment: Any) -> Json:
    return {
        "experiment_id": experiment.experiment_id,
        "name": experiment.name,
        "lifecycle_stage": experiment.lifecycle_stage,
        "last_update_time": experiment.last_update_time,
        "tags": [{"key": k, "value": v} for k, v in (experiment.tags or {}).items()],
    }


def run_json(run: Any) -> Json:
    """An ``mlflow.entities.Run`` in the REST API's JSON shape."""
    info = run.info
    inputs = getattr(run, "inputs", None)
    outputs = getattr(run, "outputs", None)
    return {
        "info": {
            "run_id": info.run_id,
            "experiment_id": info.experiment_id,
            "run_name": info.run_name,
            "user_id": info.user_id,
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "artifact_uri": info.artifact_uri,
            "lifecycle_stage": info.lifecycle_stage,
        },
        "data": {
            "metrics": [
                {"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                for m in run.data._metric_objs
            ],
            "params": [{"key": k, "value": v} for k, v in run.data.params.items()],
            "tags": [{"key": k, "value": v} for k, v in run.data.tags.items()],
        },
        "inputs": {
            "dataset_inputs": [
                {
                    "tags": [{"key": t.key, "value": t.value} for t in di.tags],
                    "dataset": {
                        "name": di.dataset.name,
                        "digest": di.dataset.digest,
                        "source_type": di.dataset.source_type,
                    },
                }
                for di in (inputs.dataset_inputs if inputs else [])
            ]
        },
        "outputs": {
            "model_outputs": [
                {"model_id": mo.model_id, "step": mo.step}
                for mo in (outputs.model_outputs if outputs else [])
            ]
        },
    }
