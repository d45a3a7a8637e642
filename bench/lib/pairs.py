#!/usr/bin/python3
"""Run two benchmark commands alternately and compare them.

Each command is one timed run that prints, as its last line of standard
output, a JSON object of numbers (seconds, loss, accuracy, ...) and strings
(notes such as the BLAS kernel). Runs go in pairs, and the side that starts
a pair alternates (A B, B A, A B, ...), so that whatever else the machine
does falls on both sides alike. Every run is wrapped in GNU time for its peak
resident memory. The report gives, for each metric, the minimum, median and
maximum of each side and of the per-pair ratio A/B, with the machine's load
average before and after.

Usage:
  pairs.py --title T --pairs 7 --a-name gauntlet --a 'CMD' --b-name sklearn --b 'CMD'
           [--ratio seconds --ratio peak_rss_mb ...] [--json OUT]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TIME = "/usr/bin/time"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(cmd):
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        p = subprocess.run([TIME, "-f", "%M", "-o", rss.name, "sh", "-c", cmd],
                           stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if p.returncode != 0:
            sys.exit(f"pairs: command failed with exit status {p.returncode}: {cmd}")
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        if not lines:
            sys.exit(f"pairs: command printed nothing: {cmd}")
        try:
            res = json.loads(lines[-1])
        except json.JSONDecodeError as e:
            sys.exit(f"pairs: last line of {cmd!r} is not JSON ({e}): {lines[-1]!r}")
        res["peak_rss_mb"] = int(rss.read().strip().splitlines()[-1]) / 1024
        res["process_seconds"] = wall
        return res


def spread(v):
    return min(v), statistics.median(v), max(v)


def fmt(x):
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.3g}"
    return f"{x:.3g}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--title", required=True)
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--a-name", required=True)
    ap.add_argument("--a", required=True)
    ap.add_argument("--b-name", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--ratio", action="append", default=[],
                    help="metric to give as a ratio A/B (default: seconds and peak_rss_mb)")
    ap.add_argument("--json", help="also write every run and the summary here")
    args = ap.parse_args()
    if args.pairs < 1:
        sys.exit("pairs: --pairs must be at least 1")
    if not os.access(TIME, os.X_OK):
        sys.exit(f"pairs: {TIME} (GNU time) is missing: apt-get install time")
    ratios = args.ratio or ["seconds", "peak_rss_mb"]
    sides = {"a": (args.a_name, args.a), "b": (args.b_name, args.b)}
    before = loadavg()
    print(f"# {args.title}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, load average before: {before}")
    runs = {"a": [], "b": []}
    for i in range(args.pairs):
        order = "ab" if i % 2 == 0 else "ba"
        for s in order:
            name, cmd = sides[s]
            r = run(cmd)
            runs[s].append(r)
            nums = " ".join(f"{k}={fmt(v)}" for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            print(f"pair {i + 1} {name:>10}: {nums}", flush=True)
    after = loadavg()
    print(f"# load average after: {after}")
    for s in "ab":
        notes = {k: v for k, v in runs[s][-1].items() if isinstance(v, str)}
        if notes:
            print(f"# {sides[s][0]}: " + ", ".join(f"{k}: {v}" for k, v in notes.items()))
    metrics = [k for k, v in runs["a"][0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    metrics += [k for k, v in runs["b"][0].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in metrics]
    print(f"{'metric':<22} {args.a_name + ' min/median/max':>34} {args.b_name + ' min/median/max':>34} {'ratio A/B min/median/max':>30}")
    summary = {}
    for m in metrics:
        row = {}
        cols = []
        for s in "ab":
            v = [r[m] for r in runs[s] if m in r]
            if v:
                row[s] = spread(v)
                cols.append(" / ".join(fmt(x) for x in row[s]))
            else:
                cols.append("-")
        ratio = "-"
        if m in ratios and "a" in row and "b" in row:
            rs = [ra[m] / rb[m] for ra, rb in zip(runs["a"], runs["b"]) if rb.get(m)]
            if rs:
                row["ratio"] = spread(rs)
                ratio = " / ".join(f"{x:.2f}" for x in row["ratio"])
        summary[m] = row
        print(f"{m:<22} {cols[0]:>34} {cols[1]:>34} {ratio:>30}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"title": args.title, "load_before": before, "load_after": after, "names": [args.a_name, args.b_name],
                       "commands": [args.a, args.b], "runs": runs, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
