"""`tracking.list_runs` refuses bad arguments before asking any server."""

from __future__ import annotations

from typing import Any

import pytest

from backends.errors import InvalidInput
from backends.mlflow import runs as tracking


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_results": 0}, "max_results must be at least 1"),
        ({"offset": -1}, "offset must be at least 0"),
        ({"sync": "sometimes"}, "sync must be one of now, full, defer, later, none"),
    ],
)
def test_bad_arguments_are_named(arguments: dict[str, Any], message: str) -> None:
    # An address nothing listens on: the refusal must come before any request.
    with pytest.raises(InvalidInput, match=message):
        tracking.list_runs("http://127.0.0.1:9", "any", **arguments)
