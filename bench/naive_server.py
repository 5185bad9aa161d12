"""The seed article's "simple FastAPI loader", as a peer for bench/serve.py.

    model = mlflow.pyfunc.load_model(URI)
    @app.post('/predict')
    def predict(payload: dict): return {'predictions': model.predict(payload['data']).tolist()}

(The one change: rows arrive as records and become a DataFrame, since pyfunc needs named
columns for a model with a signature.)
"""

from __future__ import annotations

import os
import sys

import mlflow.pyfunc
import pandas as pd
import uvicorn
from fastapi import FastAPI

app = FastAPI()
model = mlflow.pyfunc.load_model(os.environ["NAIVE_MODEL_URI"])


@app.post("/predict")
def predict(payload: dict) -> dict:  # type: ignore[type-arg]
    preds = model.predict(pd.DataFrame(payload["data"]))
    return {"predictions": preds.tolist()}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
