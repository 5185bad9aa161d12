"""The frame a model on the general path is given: built from one float64 array when every
column is a double, it must be the frame the per-column cast gives — values and layout — for
every input the schema check lets through."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from server.model import LoadedModel, ModelIdentity
from server.payload import Table
from server.schema import PANDAS_DTYPES, ColumnSpec, InputSchema, conform

IDENTITY = ModelIdentity("m", "1", "r", "", "models:/m/1")


def loaded(*specs: ColumnSpec) -> LoadedModel:
    return LoadedModel(
        IDENTITY, InputSchema(tuple(specs)), pyfunc=None, drift=None, drift_status=""
    )


def by_casting(model: LoadedModel, columns: list[str], rows: list[list[Any]]) -> pd.DataFrame:
    """The frame as it was always built: from the rows, then each column cast to its type."""
    assert model.schema is not None
    dtypes = {c.name: PANDAS_DTYPES[c.type] for c in model.schema.columns if c.type != "string"}
    return pd.DataFrame(rows, columns=columns).astype(dtypes)


def a_value(rng: random.Random, kind_of_column: str, required: bool) -> Any:
    big = 1e308 if kind_of_column == "double" else 3.4e38  # the largest each type holds
    kind = rng.randrange(8 if required else 9)
    return [
        rng.uniform(-1e6, 1e6),
        rng.randint(-(2**62), 2**62),  # ints beyond 2**53 round as a cast from int64 does
        2**62 + 2**38 + 1,  # a float column casts an int column in one rounding, not two
        rng.randint(-5, 5),
        0.1 + 0.2,
        -0.0,
        2**53 + 1,
        rng.choice([big, -big, 5e-324, 1.5e-45]),  # below float32's least: as the cast rounds
        None,  # optional columns only: NaN either way
    ][kind]


@pytest.mark.parametrize("kind", ["double", "float"])
@pytest.mark.parametrize("required", [True, False])
def test_float_columns_give_the_frame_the_cast_gives(kind: str, required: bool) -> None:
    rng = random.Random(f"{kind}{required}")
    specs = [ColumnSpec(f"c{i}", kind, required) for i in range(5)]
    model = loaded(*specs)
    for n in (1, 2, 7, 64):
        table = Table(
            [s.name for s in specs],
            [[a_value(rng, kind, required) for _ in specs] for _ in range(n)],
        )
        columns, rows = conform(table, model.schema)
        assert columns is not None
        got, cast = model.frame(columns, rows), by_casting(model, columns, rows)
        pd.testing.assert_frame_equal(got, cast, check_exact=True)
        assert got.dtypes.tolist() == [np.dtype(PANDAS_DTYPES[kind])] * len(specs)
        # The array a model reads is laid out as the cast's: BLAS rounds by layout.
        assert np.asarray(got).flags.f_contiguous == np.asarray(cast).flags.f_contiguous


def test_a_linear_models_answers_are_the_same_to_the_last_bit() -> None:
    """A dot product's rounding depends on the array's layout: a regression's predictions on
    the new frame and on the cast one are equal bit for bit, batch after batch."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(7)
    names = [f"c{i}" for i in range(6)]
    train = pd.DataFrame(rng.normal(size=(200, 6)) * 1e3, columns=names)
    fitted = LinearRegression().fit(train, rng.normal(size=200))
    model = loaded(*(ColumnSpec(n, "double") for n in names))
    for n in (1, 3, 17, 64, 200):
        rows = (rng.normal(size=(n, 6)) * 10.0 ** rng.integers(-3, 6)).tolist()
        columns, rows = conform(Table(names, rows), model.schema)
        assert columns is not None
        ours = fitted.predict(model.frame(columns, rows))
        theirs = fitted.predict(by_casting(model, columns, rows))
        assert np.array_equal(ours, theirs), np.abs(ours - theirs).max()


def test_columns_sent_in_another_order_come_out_in_the_schemas() -> None:
    model = loaded(ColumnSpec("a", "double"), ColumnSpec("b", "double"))
    columns, rows = conform(Table(["b", "a"], [[1, 2.5], [3, 4]]), model.schema)
    assert columns is not None
    got = model.frame(columns, rows)
    assert got.columns.tolist() == ["a", "b"]
    assert got.values.tolist() == [[2.5, 1.0], [4.0, 3.0]]


def test_mixed_types_keep_the_cast_per_column() -> None:
    model = loaded(ColumnSpec("x", "double"), ColumnSpec("n", "long"), ColumnSpec("s", "string"))
    columns, rows = conform(Table(None, [[1, 2, "a"], [0.5, 3, "b"]]), model.schema)
    assert columns is not None
    got = model.frame(columns, rows)
    pd.testing.assert_frame_equal(got, by_casting(model, columns, rows))
    assert got.dtypes.tolist()[:2] == [np.dtype("float64"), np.dtype("int64")]


def test_without_a_schema_the_rows_are_the_frame() -> None:
    model = LoadedModel(IDENTITY, None, pyfunc=None, drift=None, drift_status="")
    got = model.frame(["a"], [[1], [2]])
    assert got["a"].tolist() == [1, 2]


def test_a_float_column_refuses_what_float32_cannot_hold_and_keeps_what_it_can() -> None:
    """A value beyond float32's range would reach the model as infinity: refused (422) like
    any other non-finite number; the largest values that round to float32's maximum pass."""
    from server.errors import ClientError

    model = loaded(ColumnSpec("x", "float"), ColumnSpec("y", "double"))
    for beyond in (3.40282357e38, -1e39, 10**39):
        with pytest.raises(ClientError) as refused:
            conform(Table(None, [[beyond, 1.0]]), model.schema)
        assert refused.value.status == 422 and "not a finite number" in refused.value.message
    columns, rows = conform(Table(None, [[3.4028235e38, 1e300], [-3.4028234e38, 0]]), model.schema)
    assert columns is not None
    got = model.frame(columns, rows)
    assert np.isfinite(got.to_numpy(dtype=np.float64)).all()
    assert got["x"].dtype == np.float32 and got["y"].tolist() == [1e300, 0.0]
