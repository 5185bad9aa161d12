"""Write data/loans.csv: a small generated loan book with a group attribute.

Repayment follows income and debt for group A; group B (a sixth of the rows, and new to
employment: under five years) repays the more the lower its income (small loans, family
support). A shallow model fitted to the
whole book by a linear model learns the majority's rule and is wrong far more often for B
(the gate's fairness rule catches it, gate.yaml); a tree can tell B's rows apart by their
years in work and learns both.
Deterministic: the same file every time (``python generate.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 3000


def generate(rows: int = ROWS, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(rows) < 1 / 6, "B", "A")
    income = rng.gamma(4.0, 12.0, rows).round(1)  # thousands a year
    debt_ratio = rng.beta(2.0, 5.0, rows).round(3)
    years_employed = np.where(group == "B", rng.integers(0, 5, rows), rng.integers(5, 30, rows))
    score_a = 0.1 * (income - 40.0) - 8.0 * (debt_ratio - 0.28)
    score_b = 0.1 * (40.0 - income)
    score = np.where(group == "A", score_a, score_b) + rng.normal(0.0, 0.3, rows)
    return pd.DataFrame(
        {
            "income": income,
            "debt_ratio": debt_ratio,
            "years_employed": years_employed,
            "group": group,
            "repaid": (score > 0).astype(int),
        }
    )


if __name__ == "__main__":
    path = Path(__file__).resolve().parent / "data" / "loans.csv"
    generate().to_csv(path, index=False)
    print(f"wrote {path}")
