#!/bin/sh
# Gauntlet's MLP against PyTorch on the CPU with the same architecture
# (one hidden ReLU layer), optimiser (Adam, lr 1e-3, L2 1e-4 on weights),
# epochs and batch size, on the same encoded matrix, alternating the two
# run by run (bench/lib/pairs.py): time per epoch, final training loss,
# peak memory.
#
# Usage (from anywhere): bench/ml/mlp_vs_torch.sh [DATA] [PAIRS] [EPOCHS] [HIDDEN] [BATCH]
#   DATA default builtin:credit-risk?rows=1000000; PAIRS 7; EPOCHS 3;
#   HIDDEN 32; BATCH 128.
# Needs Go, Debian's python3-torch, GNU time (bench/lib/install-peers.sh). PyTorch reads the float32
# matrix Gauntlet encoded; each Gauntlet run loads and encodes it itself.
set -eu
cd "$(dirname "$0")/../.."
data=${1:-builtin:credit-risk?rows=1000000}
pairs=${2:-7}
epochs=${3:-3}
hidden=${4:-32}
batch=${5:-128}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/fitbench" ./bench/ml/fitbench
"$work/fitbench" -data "$data" -prepare "$work" -dtype f32
/usr/bin/python3 bench/lib/pairs.py --title "MLP $hidden hidden, $epochs epochs, batch $batch on $data" --pairs "$pairs" \
	--a-name gauntlet --a "'$work/fitbench' -data '$data' -model mlp -epochs $epochs -hidden $hidden -batch $batch" \
	--b-name torch --b "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/ml/torch_mlp.py '$work' $epochs $hidden $batch" \
	--ratio epoch_seconds --ratio final_loss --ratio peak_rss_mb
