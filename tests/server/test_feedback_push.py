"""`mlops feedback push` against a real `python -m server` process: a CSV of delayed labels in
bulk, each judged by the server, the outcome in one line (or JSON) and a documented exit code."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from console.cli.main import app
from tests.server.conftest import FEATURES, iris_frame

runner = CliRunner()
ROWS = iris_frame()[FEATURES].to_numpy().tolist()
TRUTH = iris_frame()["target"].tolist()


def predicted(url: str, rows: list[list[float]]) -> dict:
    answer = httpx.post(f"{url}/predict", json={"data": rows}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_csv_of_labels_is_judged_row_by_row(served_model: str, tmp_path: Path) -> None:
    answer = predicted(served_model, ROWS[:150])
    rid = answer["request_id"]
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "request_id,index,truth\n" + "".join(f"{rid},{i},{TRUTH[i]}\n" for i in range(150))
    )
    done = runner.invoke(app, ["feedback", "push", str(csv), "--url", served_model, "--json"])
    assert done.exit_code == 0, done.output
    totals = json.loads(done.stdout)
    assert (totals["sent"], totals["accepted"], totals["not_found"]) == (150, 150, 0)

    # Again in small batches, with an unknown id and a row that is not there: exit 1, said.
    csv.write_text(
        "request_id,index,truth\n"
        + "".join(f"{rid},{i},{TRUTH[i]}\n" for i in range(10))
        + "no-such-request,0,1\n"
        + f"{rid},999,1\n"
    )
    done = runner.invoke(app, ["feedback", "push", str(csv), "--url", served_model, "--batch", "3"])
    assert done.exit_code == 1, done.output
    assert "12 labels sent" in done.stdout
    assert "0 accepted, 10 relabelled, 2 not found, 0 invalid" in done.stdout
    assert "no-such-request[0]" in done.stderr


def test_bad_files_and_unreachable_servers_get_one_line_and_their_exit_codes(
    served_model: str, tmp_path: Path
) -> None:
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("id,value\nx,1\n")
    bad_line = tmp_path / "bad-line.csv"
    bad_line.write_text("request_id,index,truth\nx,0,1\ny,first,1\n")
    good = tmp_path / "good.csv"
    good.write_text("request_id,truth\nx,1\n")
    cases = [
        (["feedback", "push", str(bad_header), "--url", served_model], 2, "request_id and truth"),
        (["feedback", "push", str(bad_line), "--url", served_model], 2, "line 3"),
        (["feedback", "push", str(tmp_path / "none.csv"), "--url", served_model], 2, "cannot read"),
        (["feedback", "push", str(good)], 2, "--deployment NAME or --url URL"),
        (["feedback", "push", str(good), "--url", "http://127.0.0.1:9"], 3, "cannot send"),
        (["--read-only", "feedback", "push", str(good), "--url", served_model], 2, "read-only"),
    ]
    for args, code, said in cases:
        done = runner.invoke(app, args)
        assert done.exit_code == code, (args, done.output)
        assert said in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
