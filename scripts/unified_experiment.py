#!/usr/bin/env python3
"""The experiment of Song et al. 2017 ("Learning Unified Embedding for Apparel Recognition") on a
catalogue with verticals, end to end with the `tailor` command:

  (a) a specialist embedding model per vertical, trained with the triplet loss on its rows only;
  (b) one triplet model over all the verticals;
  (c) one unified model distilled from the specialists (`tailor distill`, an L2 loss to each
      image's specialist embedding);
  and the sweet-spot curve: triplet models over the first 1, 2, … verticals, judged on the first.

Relevance is the same label (default: `articleType+baseColour`, the same article type and colour).
Every model is evaluated on one held-out test set (every 10th product id, never trained on), each
query searching the test images of its own vertical: Recall@1 and MAP@R per vertical. Writes
`results.md` and `results.json` into --out and prints the table.

Needs only Python 3 and a built tailor (cargo build --release). Example:

  python3 scripts/unified_experiment.py --data ../shared/data/fashion-product-small/labels.csv \\
      --out runs/unified --epochs 3
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections import Counter


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the catalogue's CSV (file column and attributes)")
    ap.add_argument("--image-dir", help="the images' folder (default: beside the CSV, or its images/)")
    ap.add_argument("--out", default="runs/unified", help="where the runs and results go")
    ap.add_argument("--vertical-column", default="subCategory")
    ap.add_argument("--label", default="articleType+baseColour", help="what makes two images a match")
    ap.add_argument("--verticals", type=int, default=4, help="the largest N verticals")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--embedding-dim", default="64")
    ap.add_argument("--model", default="--growth-rate 8 --blocks 2,2,2",
                    help="tailor train's model flags, in one string")
    ap.add_argument("--tailor", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "tailor"))
    a = ap.parse_args()
    a.model = a.model.split()
    if not os.path.exists(a.tailor):
        sys.exit(f"{a.tailor} not found: build it with cargo build --release, or give --tailor")
    os.makedirs(a.out, exist_ok=True)
    image_dir = a.image_dir or default_image_dir(a.data)

    # One split for every model: every 10th product id is a test image.
    rows = list(csv.DictReader(open(a.data, newline="")))
    sizes = Counter(r[a.vertical_column] for r in rows)
    verticals = [v for v, _ in sizes.most_common(a.verticals)]
    kept = [r for r in rows if r[a.vertical_column] in verticals]
    test = [r for r in kept if int(os.path.splitext(r["file"])[0]) % 10 == 0]
    train = [r for r in kept if int(os.path.splitext(r["file"])[0]) % 10 != 0]
    train_csv, test_csv = write(a.out, "train.csv", train, rows), write(a.out, "test.csv", test, rows)
    print(f"verticals {', '.join(f'{v} ({sizes[v]})' for v in verticals)}: {len(train)} training and "
          f"{len(test)} test images", flush=True)

    common = ["--image-dir", image_dir, "--label-column", a.label, "--vertical-column", a.vertical_column]
    embedding = ["--task", "embedding", "--embedding-dim", a.embedding_dim, "--epochs", str(a.epochs),
                 "--augment", "--overwrite"] + a.model
    times = {}

    def train_run(name, extra):
        t0 = time.time()
        tailor(a, ["train", "--data", train_csv, "--out", os.path.join(a.out, name)] + common + embedding + extra)
        times[name] = time.time() - t0

    def evaluate(name, only=None):
        out = os.path.join(a.out, "eval", name + (f"-{only}" if only else ""))
        args = ["eval", "--model", os.path.join(a.out, name), "--data", test_csv, "--out", out] + common
        if only:
            args += ["--vertical", only]
        tailor(a, args)
        report = json.load(open(os.path.join(out, "eval.json")))
        return report.get("per_vertical", {})

    t_all = time.time()
    # (a) specialists
    for v in verticals:
        train_run(slug(v), ["--vertical", v])
    # (b) one triplet model over all of them (the last point of the sweet-spot curve)
    general = "all-" + str(len(verticals))
    train_run(general, ["--vertical", ",".join(verticals)])
    # the sweet-spot curve's other points: the first 2 … N-1 verticals
    for n in range(2, len(verticals)):
        train_run(f"all-{n}", ["--vertical", ",".join(verticals[:n])])
    # (c) the unified model, distilled from the specialists
    t0 = time.time()
    teachers = sum((["--teacher", os.path.join(a.out, slug(v))] for v in verticals), [])
    tailor(a, ["distill", "--data", train_csv, "--out", os.path.join(a.out, "unified")] + teachers + common
           + ["--epochs", str(a.epochs), "--augment", "--overwrite", "--batch-size", "64"] + a.model)
    times["unified"] = time.time() - t0

    results = {"verticals": verticals, "specialist": {}, "triplet_all": {}, "unified": {}, "sweet_spot": []}
    for v in verticals:
        results["specialist"][v] = evaluate(slug(v), v).get(v, {})
    per = evaluate(general)
    results["triplet_all"] = {v: per.get(v, {}) for v in verticals}
    per = evaluate("unified")
    results["unified"] = {v: per.get(v, {}) for v in verticals}
    first = verticals[0]
    for n in range(1, len(verticals) + 1):
        name = slug(first) if n == 1 else f"all-{n}"
        r = results["specialist"][first] if n == 1 else evaluate(name, first).get(first, {})
        results["sweet_spot"].append({"verticals": n, "recall@1": r.get("recall@1"), "map_at_r": r.get("map_at_r")})
    results["seconds"] = {**{k: round(t) for k, t in times.items()}, "total": round(time.time() - t_all)}

    md = table(results, a)
    open(os.path.join(a.out, "results.md"), "w").write(md)
    json.dump(results, open(os.path.join(a.out, "results.json"), "w"), indent=1)
    print(md)


def table(r, a):
    f = lambda v: "-" if v is None else f"{v:.3f}"
    s = (f"Recall@1 / MAP@R on the test images of each vertical (same {a.label}), each query searching its "
         f"vertical; {a.epochs} epochs each\n\n| Vertical | Specialist (a) | One triplet model (b) | Unified, "
         f"distilled (c) |\n|---|---|---|---|\n")
    for v in r["verticals"]:
        cells = [r[k][v] for k in ("specialist", "triplet_all", "unified")]
        s += f"| {v} | " + " | ".join(f"{f(c.get('recall@1'))} / {f(c.get('map_at_r'))}" for c in cells) + " |\n"
    s += f"\nSweet spot: a triplet model over the first n verticals, judged on {r['verticals'][0]}\n\n"
    s += "| n | Recall@1 | MAP@R |\n|---:|---:|---:|\n"
    for p in r["sweet_spot"]:
        s += f"| {p['verticals']} | {f(p['recall@1'])} | {f(p['map_at_r'])} |\n"
    s += "\nWall time (s): " + ", ".join(f"{k} {v}" for k, v in r["seconds"].items()) + "\n"
    return s


def tailor(a, args):
    print("$ tailor " + " ".join(args), flush=True)
    done = subprocess.run([a.tailor] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tail = "\n".join(l for l in done.stderr.splitlines() if l.startswith(("epoch", "error", "warning")))
    if tail:
        print(tail, flush=True)
    if done.returncode != 0:
        sys.exit(f"tailor {args[0]} failed:\n{done.stderr}")


def write(out, name, rows, all_rows):
    path = os.path.join(out, name)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(all_rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    return path


def default_image_dir(data):
    base = os.path.dirname(os.path.abspath(data))
    images = os.path.join(base, "images")
    return images if os.path.isdir(images) else base


def slug(v):
    return "specialist-" + "".join(c if c.isalnum() else "-" for c in v).lower()


if __name__ == "__main__":
    main()
