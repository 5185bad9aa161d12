"""One run: status, params, metrics, data sets, models and artifacts."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from backends.records import RunDetail
from console import format as fmt
from console.capabilities import Runs
from console.messages import BackendFailed, RunDetailLoaded
from console.screens.base import ResourceScreen


class RunDetailScreen(ResourceScreen):
    """What `mlops runs show` prints, in a scrolling pane."""

    @property
    def runs_of(self) -> Runs:
        """The one capability this screen uses."""
        return self.mlops.services.runs

    RESOURCE = "runs"

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def compose_body(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="run-detail", markup=False)

    def body_mounted(self) -> None:
        self.set_pane_status(f"run {self.run_id}: loading…")
        self.load()

    def load(self) -> None:
        self._load(self.run_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="run-detail")
    def _load(self, run_id: str) -> None:
        try:
            detail = self.runs_of.show_run(run_id)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(RunDetailLoaded(detail))

    def on_run_detail_loaded(self, message: RunDetailLoaded) -> None:
        self.loaded()
        self.set_pane_status(f"run {self.run_id} (esc: back)")
        self.query_one("#run-detail", Static).update(render_detail(message.detail))


def render_detail(detail: RunDetail) -> str:
    """The run as plain text lines."""
    run = detail.run
    lines = [
        f"run         {run.name}  ({run.run_id})",
        f"experiment  {detail.experiment_name} (id {run.experiment_id})",
        f"status      {run.status}",
        f"started     {fmt.when(run.start_time)}   duration {fmt.duration(run.duration_seconds)}",
        f"user        {run.user}",
        f"source      {detail.source or '-'}   git {detail.git_commit or '-'}",
        f"artifacts   {detail.artifact_uri}",
        "",
        "params",
        *(f"  {k} = {v}" for k, v in sorted(run.params.items())),
        "",
        "metrics",
        *(f"  {k} = {fmt.number(v, 6)}" for k, v in sorted(run.metrics.items())),
        "",
        "data sets",
        *(f"  {d.name}  digest {d.digest}  {d.context or ''}" for d in run.datasets),
        "",
        "models",
        *(f"  {m.name}  {m.uri}  [{', '.join(m.flavors)}]" for m in detail.models),
        "",
        "artifacts",
        *(f"  {a.path}{'/' if a.is_dir else ''}" for a in detail.artifacts),
    ]
    return "\n".join(lines)
