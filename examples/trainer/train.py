#!/usr/bin/env python3
"""A tiny logistic-regression trainer that follows Gauntlet's run: contract.

Inputs (GAUNTLET_INPUT_*): epochs, lr, data (a CSV path whose last column is
a 0/1 label, or "generated"), seed, rows, crash_after. It reports progress
with ::progress lines, checkpoints after every epoch into
GAUNTLET_CHECKPOINT_DIR and says so with a ::checkpoint line (Gauntlet then
publishes the directory to the artifact store, from which an attempt on any
worker resumes), and writes outputs.json into
GAUNTLET_OUTPUT_DIR and model.json as GAUNTLET_OUTPUT_DIR/artifacts/model,
which Gauntlet publishes to the artifact store as the output "model" (a
pointer later steps take). Standard library only.
"""

import csv
import json
import math
import os
import random
import sys

EX_USAGE = 2      # bad inputs: Gauntlet does not retry
EX_DATAERR = 65   # bad data: Gauntlet does not retry


def fail(code, msg):
    print(f"train.py: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def contract_dir(name):
    path = os.environ.get(name)
    if not path:
        fail(EX_USAGE, f"{name} is not set; run me as a Gauntlet run: step")
    return path


def input_value(name, default, parse):
    raw = os.environ.get("GAUNTLET_INPUT_" + name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        fail(EX_USAGE, f"input {name.lower()}={raw!r} is not a valid {parse.__name__}")


def integer(raw):
    value = float(raw)
    if value != int(value):
        raise ValueError(raw)
    return int(value)


def generated(rows, seed):
    """Two Gaussian blobs that a line separates well but not perfectly."""
    rng = random.Random(seed)
    data = []
    for _ in range(rows):
        y = rng.random() < 0.5
        centre = 1.0 if y else -1.0
        data.append(([rng.gauss(centre, 1.0), rng.gauss(centre * 0.5, 1.0)], 1 if y else 0))
    return data


def load_csv(path):
    data = []
    try:
        with open(path, newline="") as f:
            for n, row in enumerate(csv.reader(f), 1):
                if not row or (n == 1 and not _numeric(row[0])):
                    continue  # blank line or header
                try:
                    *x, y = (float(v) for v in row)
                except ValueError:
                    fail(EX_DATAERR, f"{path}:{n}: not all numbers: {row}")
                if y not in (0.0, 1.0):
                    fail(EX_DATAERR, f"{path}:{n}: label {y} is not 0 or 1")
                data.append((x, int(y)))
    except FileNotFoundError:
        fail(EX_DATAERR, f"{path}: no such file")
    if not data or any(len(x) != len(data[0][0]) for x, _ in data):
        fail(EX_DATAERR, f"{path}: empty, or rows of different widths")
    return data


def _numeric(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def evaluate(data, w, b):
    loss, correct = 0.0, 0
    for x, y in data:
        p = sigmoid(sum(wi * xi for wi, xi in zip(w, x)) + b)
        p = min(max(p, 1e-12), 1 - 1e-12)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
        correct += (p >= 0.5) == (y == 1)
    return loss / len(data), correct / len(data)


def write_json(path, obj):
    """Write atomically, so a crash never leaves half a checkpoint. The
    temporary name starts with '.': Gauntlet leaves such names out when it
    publishes the checkpoint directory or the artifacts."""
    head, tail = os.path.split(path)
    tmp = os.path.join(head, "." + tail + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main():
    out_dir = contract_dir("GAUNTLET_OUTPUT_DIR")
    ckpt_dir = contract_dir("GAUNTLET_CHECKPOINT_DIR")
    epochs = input_value("EPOCHS", 10, integer)
    lr = input_value("LR", 0.1, float)
    source = input_value("DATA", "generated", str)
    seed = input_value("SEED", 7, integer)
    rows = input_value("ROWS", 500, integer)
    crash_after = input_value("CRASH_AFTER", 0, integer)
    if epochs < 1 or lr <= 0 or rows < 1:
        fail(EX_USAGE, "epochs and rows must be at least 1 and lr positive")

    data = generated(rows, seed) if source == "generated" else load_csv(source)
    config = {"data": source, "seed": seed, "rows": rows, "lr": lr}

    w, b, start = [0.0] * len(data[0][0]), 0.0, 0
    ckpt_path = os.path.join(ckpt_dir, "checkpoint.json")
    if os.path.exists(ckpt_path):
        with open(ckpt_path) as f:
            ckpt = json.load(f)
        # A checkpoint of another configuration is not ours to continue.
        if ckpt.get("config") == config and ckpt["epoch"] <= epochs:
            w, b, start = ckpt["w"], ckpt["b"], ckpt["epoch"]
            print(f"resuming after epoch {start} from {ckpt_path}", flush=True)

    for epoch in range(start + 1, epochs + 1):
        # The shuffle depends on the epoch only, so a resumed run trains
        # exactly as an uninterrupted one would.
        order = list(range(len(data)))
        random.Random(seed * 1000003 + epoch).shuffle(order)
        for i in order:
            x, y = data[i]
            g = sigmoid(sum(wi * xi for wi, xi in zip(w, x)) + b) - y
            w = [wi - lr * g * xi for wi, xi in zip(w, x)]
            b -= lr * g
        loss, acc = evaluate(data, w, b)
        write_json(ckpt_path, {"config": config, "epoch": epoch, "w": w, "b": b})
        # The checkpoint is whole: Gauntlet publishes the directory to the
        # store, where an attempt on any worker resumes from it.
        print(f"::checkpoint epoch={epoch}/{epochs}", flush=True)
        print(f"::progress epoch={epoch}/{epochs} loss={loss:.4f} accuracy={acc:.4f}", flush=True)
        if epoch == crash_after:
            fail(1, f"crashing after epoch {epoch} as asked (crash_after); a retry resumes here")

    loss, acc = evaluate(data, w, b)
    # artifacts/<key> becomes output <key>: Gauntlet stores the file and
    # hands later steps its pointer, which any worker can read.
    artifacts = os.path.join(out_dir, "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    write_json(os.path.join(artifacts, "model"), {"kind": "logistic-regression", "w": w, "b": b})
    write_json(os.path.join(out_dir, "outputs.json"), {
        "loss": loss,
        "accuracy": acc,
        "epochs": epochs,
        "epochs_run": epochs - start,
        "resumed_from": start,
    })


if __name__ == "__main__":
    main()
