#!/bin/sh
# Installs the peers the bench/ml and bench/stats scripts compare against
# (Debian's scikit-learn, scipy, numpy, PyTorch for the CPU, threadpoolctl
# to report the BLAS kernel) and GNU time, which measures each run's peak
# memory. They are not test dependencies, so `make tools` leaves them out.
set -eu
need=
for p in time python3-numpy python3-scipy python3-sklearn python3-threadpoolctl python3-torch; do
	dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "install-peers: missing$need; run as root or install them" >&2
	exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
