"""Request bodies and a parity check for bench/serve/run.sh.

    records.py bodies ADULT_TEST OUTDIR
        writes OUTDIR/one.json (the first adult.test record with no missing
        field) and OUTDIR/batch32.json (the first 32 such), in the
        /v1/predict shape, every field of the record included.
    records.py parity ADULT_TEST URL_A URL_B [N]
        posts the first N (512) adult.test records, 32 per request, to both
        servers and prints one line: max |score difference| and label agreement.

adult.test holds real Adult records that neither model trained on.
"""
import csv
import json
import sys
import urllib.error
import urllib.request

NUMERIC = {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}


def records(path):
    """The records of an Adult CSV (header row), label dropped, missing values null."""
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f, skipinitialspace=True):
            row.pop("Y", None)
            rec = {}
            for k, v in row.items():
                v = v.strip()
                if v in ("", "?"):
                    rec[k] = None  # gauntlet serve wants every feature, null when missing
                    continue
                rec[k] = float(v) if k in NUMERIC else v
                if k in NUMERIC and rec[k].is_integer():
                    rec[k] = int(rec[k])
            out.append(rec)
    return out


def body(recs):
    return json.dumps({"records": recs}, separators=(",", ":"))


def post(url, recs):
    req = urllib.request.Request(url, data=body(recs).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)["predictions"]
    except urllib.error.HTTPError as e:
        sys.exit(f"{url}: {e.code} {e.read().decode(errors='replace')}")


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    recs = records(path)
    if cmd == "bodies":
        full = [r for r in recs if None not in r.values()]
        with open(sys.argv[3] + "/one.json", "w") as f:
            f.write(body(full[:1]))
        with open(sys.argv[3] + "/batch32.json", "w") as f:
            f.write(body(full[:32]))
    elif cmd == "parity":
        a, b = sys.argv[3], sys.argv[4]
        n = int(sys.argv[5]) if len(sys.argv) > 5 else 512
        recs = recs[:n]
        diff, agree = 0.0, 0
        for i in range(0, len(recs), 32):
            pa, pb = post(a, recs[i:i + 32]), post(b, recs[i:i + 32])
            for x, y in zip(pa, pb):
                diff = max(diff, abs(x["score"] - y["score"]))
                agree += x["label"] == y["label"]
        print(f"{len(recs)} adult.test records: max |score difference| {diff:.2e}, "
              f"same label {agree}/{len(recs)}")
    else:
        sys.exit("usage: records.py bodies|parity ...")


if __name__ == "__main__":
    main()
