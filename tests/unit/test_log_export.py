"""Training sets from a prediction log written by the server's own writer: only labelled rows,
the later label winning, split by row address the same way every time."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from backends.errors import InvalidInput
from backends.lifecycle.log_export import training_sets
from server.prediction_log import PredictionLog

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def write_log(directory: Path, requests: int, labelled: int) -> None:
    log = PredictionLog(directory)
    log.start()
    for r in range(requests):
        rows = [[5.0 + r % 3, 3.0, 1.0 + r % 5, 0.2]]
        log.offer_predictions(
            f"req-{r}", "iris", "1" if r < requests // 2 else "2", COLUMNS, rows, [r % 3]
        )
    log.offer_feedback([(f"req-{r}", 0, 0) for r in range(labelled)])
    log.offer_feedback([(f"req-{r}", 0, r % 3) for r in range(labelled)])  # the later label wins
    log.offer_feedback([("never-predicted", 0, 1)])
    log.stop()


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_labelled_rows_become_training_and_held_out_sets(tmp_path: Path) -> None:
    write_log(tmp_path / "log", requests=300, labelled=200)
    sets = training_sets(tmp_path / "log", tmp_path / "out")
    train, held = rows(sets.train), rows(sets.holdout)
    assert sets.rows == len(train) + len(held) == 200
    assert sets.holdout_rows == len(held) and 20 <= len(held) <= 60
    assert list(train[0]) == [*COLUMNS, "target"]
    assert {r["target"] for r in train + held} == {"0", "1", "2"}  # the later labels
    assert sets.versions == ("1", "2") and sets.first <= sets.last
    tags = sets.tags()
    assert tags["mlops.retrain.log_rows"] == "200" and "/" in tags["mlops.retrain.log_window"]
    again = training_sets(tmp_path / "log", tmp_path / "again")
    assert rows(again.holdout) == held  # the same rows held out every time


def test_too_few_labels_is_a_usage_error_that_says_how_many(tmp_path: Path) -> None:
    write_log(tmp_path / "log", requests=50, labelled=5)
    with pytest.raises(InvalidInput, match="has 5 labelled rows"):
        training_sets(tmp_path / "log", tmp_path / "out")
    with pytest.raises(InvalidInput, match="cannot read the prediction log"):
        training_sets(tmp_path / "nowhere", tmp_path / "out")
