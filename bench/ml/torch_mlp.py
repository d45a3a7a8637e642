#!/usr/bin/python3
"""One timed PyTorch (CPU) training of the MLP fitbench trains, on the float32
matrix fitbench -prepare -dtype f32 wrote in DIR: Linear(d, H), ReLU,
Linear(H, 1), logistic loss; Adam (lr 1e-3, L2 1e-4 on the weights, not the
biases, as Gauntlet's Adam); shuffled mini-batches of B rows; E epochs.
Prints one JSON line for bench/lib/pairs.py: time per epoch and the mean
training loss of the last epoch. Usage: torch_mlp.py DIR EPOCHS HIDDEN BATCH"""
import json
import os
import sys
import time

import numpy as np
import torch

out, epochs, hidden, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
meta = json.load(open(os.path.join(out, "meta.json")))
X = torch.from_numpy(np.fromfile(os.path.join(out, "X.f32"), dtype="<f4").reshape(meta["rows"], meta["cols"]))
y = torch.from_numpy(np.fromfile(os.path.join(out, "y.f32"), dtype="<f4"))
# This torch build defaults to one thread on the 2-core machine, which was
# faster for batches this small than two (0.72 vs 0.97 s per epoch on 200k
# rows); TORCH_THREADS overrides it.
if os.environ.get("TORCH_THREADS"):
    torch.set_num_threads(int(os.environ["TORCH_THREADS"]))
torch.manual_seed(1)
net = torch.nn.Sequential(torch.nn.Linear(meta["cols"], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
opt = torch.optim.Adam([{"params": weights, "weight_decay": 1e-4}, {"params": biases, "weight_decay": 0}], lr=1e-3)
lossf = torch.nn.BCEWithLogitsLoss()
n = X.shape[0]
start = time.perf_counter()
for epoch in range(epochs):
    perm = torch.randperm(n)
    total = 0.0
    for s in range(0, n, batch):
        idx = perm[s:s + batch]
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(X[idx]).squeeze(1), y[idx])
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    final = total / n
seconds = time.perf_counter() - start
with torch.no_grad():
    acc = ((net(X).squeeze(1) >= 0).float() == y).float().mean().item()
print(json.dumps({"seconds": seconds, "epoch_seconds": seconds / epochs, "final_loss": final, "train_accuracy": acc,
                  "torch": f"{torch.__version__}, {torch.get_num_threads()} threads"}))
