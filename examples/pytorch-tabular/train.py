#!/usr/bin/env python3
"""A PyTorch MLP on tabular CSV data that follows Gauntlet's run: contract.

It trains on CUDA when there is a GPU and on the CPU otherwise, prints
::progress per epoch, checkpoints every epoch into GAUNTLET_CHECKPOINT_DIR
and resumes from there, and exports the model in Gauntlet's ONNX format
(manifest.json + model.onnx + SHA256SUMS) into GAUNTLET_OUTPUT_DIR/model.

    python3 train.py                       # as a run: step (env contract)
    python3 train.py score CKPT_DIR CSV    # P(positive) per row by PyTorch,
                                           # from a checkpoint (for checks)
"""

import csv
import datetime
import hashlib
import inspect
import json
import math
import os
import shutil
import sys
import time

EX_USAGE = 2     # bad inputs: Gauntlet does not retry
EX_DATAERR = 65  # bad data: Gauntlet does not retry
MISSING = {"", "?", "NA", "N/A", "NaN", "nan", "null", "NULL"}


def fail(code, msg):
    print(f"train.py: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


try:
    import torch
except ImportError as e:  # no torch: the node's image is wrong; do not retry
    fail(EX_USAGE, f"PyTorch is not installed ({e}); on Debian: apt-get install python3-torch")


def env_dir(name):
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


def names(raw):
    return [s.strip() for s in raw.split(",") if s.strip()]


def read_csv(path):
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        fail(EX_DATAERR, f"{path}: {e}")
    if len(rows) < 2:
        fail(EX_DATAERR, f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            fail(EX_DATAERR, f"{path}:{n}: {len(row)} fields, the header has {len(header)}")
    return header, [[v.strip() for v in r] for r in rows[1:]]


def is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def schema_of(header, rows, label, sensitive, path):
    """Column kinds as Gauntlet's schema records them: numeric when every
    present value parses as a number, categorical otherwise."""
    if label not in header:
        fail(EX_DATAERR, f"{path}: no label column {label!r} (columns: {', '.join(header)})")
    for s in sensitive:
        if s not in header:
            fail(EX_USAGE, f"sensitive column {s!r} is not in {path}")
    cols = []
    for j, name in enumerate(header):
        if name == label:
            kind = "label"
        elif name in sensitive:
            kind = "sensitive"
        elif all(r[j] in MISSING or is_number(r[j]) for r in rows):
            kind = "numeric"
        else:
            kind = "categorical"
        cols.append({"name": name, "kind": kind})
    return cols


def fit_encoder(header, rows, cols):
    """Gauntlet's encoder: numeric columns standardised with the population
    standard deviation (1 for a constant column; missing values take the
    mean), then one-hot categories in sorted order (unseen ones all zero)."""
    enc = {"numeric": [], "categorical": [], "unseen": "zero"}
    for j, c in enumerate(cols):
        if c["kind"] == "numeric":
            vals = [float(r[j]) for r in rows if r[j] not in MISSING]
            mean = sum(vals) / len(vals) if vals else 0.0
            ss = sum((v - mean) ** 2 for v in vals)
            std = math.sqrt(ss / len(vals)) if vals and ss > 0 else 1.0
            enc["numeric"].append({"name": c["name"], "mean": mean, "std": std, "imputed": len(rows) - len(vals)})
    for j, c in enumerate(cols):
        if c["kind"] == "categorical":
            values = sorted({r[j] for r in rows if r[j] not in MISSING})
            enc["categorical"].append({"name": c["name"], "values": values})
    return enc


def feature_names(enc):
    return [f["name"] for f in enc["numeric"]] + [f"{c['name']}={v}" for c in enc["categorical"] for v in c["values"]]


def transform(header, rows, enc):
    index = {h: j for j, h in enumerate(header)}
    out = []
    for r in rows:
        x = []
        for f in enc["numeric"]:
            v = r[index[f["name"]]]
            x.append(0.0 if v in MISSING else (float(v) - f["mean"]) / f["std"])
        for c in enc["categorical"]:
            v = r[index[c["name"]]]
            x.extend(1.0 if v == u else 0.0 for u in c["values"])
        out.append(x)
    return torch.tensor(out, dtype=torch.float32)


class MLP(torch.nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        layers, prev = [], width
        for h in hidden:
            layers += [torch.nn.Linear(prev, h), torch.nn.ReLU()]
            prev = h
        layers += [torch.nn.Linear(prev, 1), torch.nn.Sigmoid()]
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def write_atomic(path, write):
    # A temporary name starting with '.': Gauntlet leaves such names out of
    # the checkpoint directory and the artifacts it publishes.
    head, tail = os.path.split(path)
    tmp = os.path.join(head, "." + tail + ".tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def shape_of(value_info):
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        which = d.WhichOneof("value")
        dims.append(d.dim_value if which == "dim_value" else d.dim_param if which == "dim_param" else None)
    return dims


def export(model, width, dest, manifest):
    """Writes dest/ as Gauntlet's ONNX model directory: the graph with a
    dynamic batch axis (opset 13), its signature read back from the graph,
    SHA256SUMS, renamed into place whole."""
    import onnx

    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    graph_path = os.path.join(tmp, "model.onnx")
    kwargs = dict(input_names=["features"], output_names=["probability"], opset_version=13,
                  dynamic_axes={"features": {0: "batch"}, "probability": {0: "batch"}})
    # PyTorch 2.9 and later default to the dynamo exporter; the TorchScript
    # one keeps opset 13 and the named batch axis on every version.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    model = model.cpu().eval()
    torch.onnx.export(model, torch.zeros(2, width), graph_path, **kwargs)
    g = onnx.load(graph_path)
    onnx.checker.check_model(g)
    type_names = {onnx.TensorProto.FLOAT: "float", onnx.TensorProto.DOUBLE: "double"}

    def spec(v):
        return {"name": v.name, "type": type_names.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type)), "shape": shape_of(v)}

    inits = {t.name for t in g.graph.initializer}
    manifest["signature"] = {"inputs": [spec(v) for v in g.graph.input if v.name not in inits],
                             "outputs": [spec(v) for v in g.graph.output]}
    body = (json.dumps(manifest, indent=2) + "\n").encode()
    with open(os.path.join(tmp, "manifest.json"), "wb") as f:
        f.write(body)
    with open(graph_path, "rb") as f:
        graph = f.read()
    sums = (f"{hashlib.sha256(body).hexdigest()}  manifest.json\n"
            f"{hashlib.sha256(graph).hexdigest()}  model.onnx\n").encode()
    with open(os.path.join(tmp, "SHA256SUMS"), "wb") as f:
        f.write(sums)
    for name in ("manifest.json", "model.onnx", "SHA256SUMS"):
        with open(os.path.join(tmp, name), "rb") as f:
            os.fsync(f.fileno())
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return hashlib.sha256(sums).hexdigest()


def load_checkpoint(path):
    kwargs = {"map_location": "cpu"}
    if "weights_only" in inspect.signature(torch.load).parameters:
        kwargs["weights_only"] = False  # our own file: config dicts beside tensors
    return torch.load(path, **kwargs)


def score(ckpt_dir, csv_path):
    ckpt = load_checkpoint(os.path.join(ckpt_dir, "checkpoint.pt"))
    header, rows = read_csv(csv_path)
    x = transform(header, rows, ckpt["encoder"])
    model = MLP(x.shape[1], ckpt["config"]["hidden"])
    model.load_state_dict(ckpt["model"])
    with torch.no_grad():
        p = model.eval()(x).squeeze(1)
    json.dump([float(v) for v in p], sys.stdout)


def main():
    out_dir = env_dir("GAUNTLET_OUTPUT_DIR")
    ckpt_dir = env_dir("GAUNTLET_CHECKPOINT_DIR")
    data = input_value("DATA", "", str)
    label = input_value("LABEL", "", str)
    positive = input_value("POSITIVE_LABEL", "1", str)
    sensitive = input_value("SENSITIVE", [], names)
    epochs = input_value("EPOCHS", 10, integer)
    hidden = input_value("HIDDEN", [64, 32], lambda s: [integer(v) for v in names(s)])
    lr = input_value("LR", 1e-3, float)
    batch = input_value("BATCH_SIZE", 128, integer)
    seed = input_value("SEED", 7, integer)
    device_in = input_value("DEVICE", "auto", str)
    crash_after = input_value("CRASH_AFTER", 0, integer)
    if not data or not label:
        fail(EX_USAGE, "inputs data (a CSV with a header row) and label are required")
    if epochs < 1 or batch < 1 or lr <= 0 or not hidden or min(hidden) < 1:
        fail(EX_USAGE, "epochs, batch_size and hidden widths must be at least 1 and lr positive")
    if device_in not in ("auto", "cpu", "cuda"):
        fail(EX_USAGE, f"device={device_in!r}: want auto, cpu or cuda")
    if device_in == "cuda" and not torch.cuda.is_available():
        fail(EX_USAGE, "device=cuda but PyTorch sees no CUDA device")
    device = torch.device("cuda" if device_in == "cuda" or (device_in == "auto" and torch.cuda.is_available()) else "cpu")

    header, rows = read_csv(data)
    with open(data, "rb") as f:
        data_digest = hashlib.sha256(f.read()).hexdigest()
    cols = schema_of(header, rows, label, sensitive, data)
    li = header.index(label)
    y = torch.tensor([[1.0 if r[li] == positive else 0.0] for r in rows])
    if y.sum() == 0 or y.sum() == len(rows):
        fail(EX_DATAERR, f"{data}: label {label!r} has only one class (positive label {positive!r})")
    enc = fit_encoder(header, rows, cols)
    x = transform(header, rows, enc)
    width = x.shape[1]

    config = {"data_digest": data_digest, "label": label, "positive": positive, "sensitive": sensitive,
              "hidden": hidden, "lr": lr, "batch_size": batch, "seed": seed}
    torch.manual_seed(seed)
    model = MLP(width, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start, losses = 0, []
    ckpt_path = os.path.join(ckpt_dir, "checkpoint.pt")
    if os.path.exists(ckpt_path):
        ckpt = load_checkpoint(ckpt_path)
        # A checkpoint of another configuration or data is not ours.
        if ckpt.get("config") == config and ckpt["epoch"] <= epochs:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            start, losses = ckpt["epoch"], ckpt["losses"]
            print(f"resuming after epoch {start} from {ckpt_path}", flush=True)
    model.to(device)
    for state in opt.state.values():
        for k, v in state.items():
            if torch.is_tensor(v):
                state[k] = v.to(device)
    xd, yd = x.to(device), y.to(device)
    bce = torch.nn.BCELoss()

    for epoch in range(start + 1, epochs + 1):
        began = time.perf_counter()
        model.train()
        # The order of an epoch depends on the seed and the epoch only, so a
        # resumed run trains exactly as an uninterrupted one.
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed * 1000003 + epoch)).to(device)
        for i in range(0, len(rows), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = bce(model(xd[idx]), yd[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            p = model(xd)
            loss = float(bce(p, yd))
            acc = float(((p >= 0.5).float() == yd).float().mean())
        seconds = time.perf_counter() - began  # float() above waited for the device
        losses.append(loss)
        state = {"config": config, "epoch": epoch, "losses": losses, "encoder": enc,
                 "model": {k: v.cpu() for k, v in model.state_dict().items()}, "optimizer": opt.state_dict()}
        write_atomic(ckpt_path, lambda p: torch.save(state, p))
        # Whole on disk: Gauntlet publishes the directory to the store, where
        # an attempt on any worker (a replaced GPU node) resumes from it.
        print(f"::checkpoint epoch={epoch}/{epochs}", flush=True)
        print(f"::progress epoch={epoch}/{epochs} loss={loss:.4f} accuracy={acc:.4f} device={device.type} seconds={seconds:.3f}", flush=True)
        if epoch == crash_after:
            fail(1, f"crashing after epoch {epoch} as asked (crash_after); a retry resumes here")

    model.eval()
    with torch.no_grad():
        p = model(xd)
        loss = float(bce(p, yd))
        acc = float(((p >= 0.5).float() == yd).float().mean())
    manifest = {
        "format_version": 1,
        "format": "onnx",
        "signature": None,  # filled in from the exported graph
        "output": {"name": "probability", "column": 0},
        "schema": {"columns": cols, "label": label, "positive": [positive]},
        "preprocessing": {"kind": "encoder", "encoder": enc},
        "features": feature_names(enc),
        "threshold": 0.5,
        "metrics": {"train_loss": loss, "train_accuracy": acc},
        "lineage": {
            "data_digest": data_digest,  # sha256 of the CSV file's bytes
            "data_source": data,
            "params": {"trainer": "examples/pytorch-tabular", "epochs": epochs, "hidden": hidden, "lr": lr,
                       "batch_size": batch, "seed": seed, "device": device.type, "torch": torch.__version__},
            "created_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    # artifacts/<key> becomes output <key>: Gauntlet publishes the model
    # directory to the artifact store and hands later steps its pointer.
    model_dir = os.path.join(out_dir, "artifacts", "model")
    os.makedirs(os.path.dirname(model_dir), exist_ok=True)
    digest = export(model, width, model_dir, manifest)
    outputs = {"model_digest": digest, "format": "onnx", "loss": loss, "accuracy": acc,
               "epochs": epochs, "epochs_run": epochs - start, "resumed_from": start, "device": device.type}
    write_atomic(os.path.join(out_dir, "outputs.json"), lambda p: write_text(p, json.dumps(outputs, indent=2) + "\n"))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "score":
        score(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 1:
        main()
    else:
        fail(EX_USAGE, "usage: train.py  |  train.py score CHECKPOINT_DIR CSV")
