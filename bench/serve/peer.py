"""The peer of bench/serve: a typical FastAPI model server for UCI Adult.

At startup (in every uvicorn worker) it trains scikit-learn's
one-hot + standard scaling + LogisticRegression(lbfgs) on the same rows and
the same feature columns as Gauntlet's train step (bench/serve/run.sh passes
both in the environment), then answers POST /v1/predict with the request and
response shape of `gauntlet serve`:

    {"records": [{feature: value, ...}, ...]}
    -> {"model": {...}, "predictions": [{"score": p, "label": "..."}, ...]}

Environment:
    PEER_DATA      adult.data (header row, ", " separated, "?" missing)
    PEER_HOLDOUT   optional: Gauntlet's holdout.csv; its rows are left out of
                   training so both models learn from the same 80 %
    PEER_DROP      columns that are not features (default fnlwgt,sex,race)
    PEER_READY     optional: file to append "ready <pid>" to once trained
"""
import collections
import os
from typing import List, Optional

import numpy as np
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

LABEL, POSITIVE = "Y", ">50K"
NEGATIVE = "not " + POSITIVE  # what gauntlet serve answers for the other class
NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship",
               "race", "sex", "native-country"]
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country"]


def read_adult(path):
    return pd.read_csv(path, skipinitialspace=True, na_values=["?", ""], keep_default_na=False)


def training_rows():
    data = read_adult(os.environ["PEER_DATA"])
    holdout = os.environ.get("PEER_HOLDOUT")
    if not holdout:
        return data
    # Multiset difference on the feature and label columns (the holdout
    # leaves ignored ones empty; rows equal on these train alike), as
    # adult.data has duplicate rows.
    held = read_adult(holdout)
    cols = feature_columns() + [LABEL]
    key = lambda df: [tuple("" if pd.isna(v) else str(v) for v in row)
                      for row in df[cols].itertuples(index=False)]
    left = collections.Counter(key(held))
    keep = []
    for k in key(data):
        if left[k] > 0:
            left[k] -= 1
            keep.append(False)
        else:
            keep.append(True)
    return data[np.array(keep)]


def feature_columns():
    drop = set(os.environ.get("PEER_DROP", "fnlwgt,sex,race").split(","))
    return [c for c in COLUMNS if c not in drop]


def train():
    num = [c for c in NUMERIC if c in feature_columns()]
    cat = [c for c in CATEGORICAL if c in feature_columns()]
    df = training_rows()
    y = (df[LABEL] == POSITIVE).astype(int).to_numpy()
    # The vocabulary is the training rows' values without the missing one, so
    # a missing or unseen category encodes as all zeros, as Gauntlet's does.
    vocab = [sorted(df[c].dropna().astype(str).unique()) for c in cat]
    pipe = Pipeline([
        ("encode", ColumnTransformer([
            ("num", StandardScaler(), num),
            ("cat", OneHotEncoder(categories=vocab, handle_unknown="ignore"), cat),
        ])),
        ("lr", LogisticRegression(C=1.0, solver="lbfgs", tol=1e-5, max_iter=1000)),
    ])
    pipe.fit(df[COLUMNS], y)
    return pipe, len(df)


PIPE, ROWS = train()
MODEL = {"name": "sklearn-adult-logreg", "version": "startup", "digest": ""}


class Record(BaseModel):
    age: Optional[float] = None
    workclass: Optional[str] = None
    fnlwgt: Optional[float] = None
    education: Optional[str] = None
    education_num: Optional[float] = Field(None, alias="education-num")
    marital_status: Optional[str] = Field(None, alias="marital-status")
    occupation: Optional[str] = None
    relationship: Optional[str] = None
    race: Optional[str] = None
    sex: Optional[str] = None
    capital_gain: Optional[float] = Field(None, alias="capital-gain")
    capital_loss: Optional[float] = Field(None, alias="capital-loss")
    hours_per_week: Optional[float] = Field(None, alias="hours-per-week")
    native_country: Optional[str] = Field(None, alias="native-country")


class PredictRequest(BaseModel):
    records: List[Record]


app = FastAPI()


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


# async def: the work is a few ms of CPU with no I/O to wait on, and a plain def
# (run in Starlette's thread pool) measured 25-50 % fewer requests/s here.
@app.post("/v1/predict")
async def predict(req: PredictRequest):
    df = pd.DataFrame([r.dict(by_alias=True) for r in req.records], columns=COLUMNS)
    scores = PIPE.predict_proba(df)[:, 1]
    return {
        "model": MODEL,
        "predictions": [{"score": float(s), "label": POSITIVE if s >= 0.5 else NEGATIVE} for s in scores],
    }


if os.environ.get("PEER_READY"):
    with open(os.environ["PEER_READY"], "a") as f:
        f.write(f"ready {os.getpid()} rows={ROWS}\n")
