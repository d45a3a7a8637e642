"""Summarises bench/load/fleet.sh's output: per side, min/median/max of
throughput (successful runs per second of wall time) and of p99, and the
ratios of the medians (fleet / embedded)."""
import re
import statistics
import sys


def seconds(text):
    total = 0.0
    for value, unit in re.findall(r"([0-9.]+)(ms|µs|h|m|s)", text):
        total += float(value) * {"ms": 1e-3, "µs": 1e-6, "h": 3600, "m": 60, "s": 1}[unit]
    return total


def main(path):
    runs = {"fleet": [], "embedded": []}
    cur = None
    for line in open(path, encoding="utf-8"):
        m = re.match(r"== (fleet|embedded) ", line)
        if m:
            cur = {"side": m.group(1)}
            runs[cur["side"]].append(cur)
            continue
        if cur is None:
            continue
        m = re.match(r"completed\s+(\d+)/(\d+)", line)
        if m:
            cur["ok"] = int(m.group(1))
        m = re.match(r"run time\s+p50 (\S+)\s+p99 (\S+)", line)
        if m:
            cur["p50"], cur["p99"] = seconds(m.group(1)), seconds(m.group(2))
        m = re.match(r"wall time\s+(\S+)", line)
        if m:
            cur["wall"] = seconds(m.group(1))
    print()
    med = {}
    for side, rs in runs.items():
        rs = [r for r in rs if "wall" in r and "ok" in r and "p99" in r]
        if not rs:
            print(f"{side}: no complete runs")
            return
        tput = sorted(r["ok"] / r["wall"] for r in rs)
        p99 = sorted(r["p99"] for r in rs)
        med[side] = (statistics.median(tput), statistics.median(p99))
        print(f"{side:8s} throughput runs/s min {tput[0]:.1f} median {med[side][0]:.1f} max {tput[-1]:.1f};"
              f" p99 s min {p99[0]:.2f} median {med[side][1]:.2f} max {p99[-1]:.2f} ({len(rs)} runs)")
    print(f"fleet/embedded: throughput {med['fleet'][0] / med['embedded'][0]:.2f}x, p99 {med['fleet'][1] / med['embedded'][1]:.2f}x (medians)")


if __name__ == "__main__":
    main(sys.argv[1])
