#!/usr/bin/python3
"""Markdown tables of one model's results.json from scripts/quant_experiment.sh.

    /usr/bin/python3 scripts/quant_experiment_table.py out/quant_exp/<name>/results.json

Per budget (2, 3, 4 average weight bits): one row per method with the plan's size, average bits,
predicted Omega (block-diagonal, loss units), the measured 1/2 dW^T H dW of the whole plan, and the
test accuracy post-training (PTQ) and after quantization-aware fine-tuning (FT). Accuracies of
single runs carry +- their binomial standard error sqrt(p (1 - p) / n); random orders give the mean
+- the standard deviation over seeds (min..max). Then the fine-tuning seed spread, the
weight/activation rows, and the float model.
"""
import json
import math
import statistics
import sys

METHODS = [
    ("uniform", "uniform"),
    ("fl8", "first/last 8 + uniform"),
    ("equal", "equal sensitivity"),
    ("v1", "HAWQ-V1 (λmax/n)"),
    ("v2", "HAWQ-V2 (Tr/n)"),
    ("v2s2", "HAWQ-V2, 2nd estimator seed"),
    ("qbert", "Q-BERT (|mean|+std λmax)"),
    ("qbertg4", "Q-BERT, 4 groups per layer"),
    ("measured", "measured selection (V2 frontier)"),
    ("v2inter", "HAWQ-V2 + inter-layer terms"),
    ("mblocks", "measured ½ΔW_iᵀH_iiΔW_i"),
    ("mblocksinter", "measured ½ΔW_iᵀH_iiΔW_i + inter-layer"),
    ("reverse", "reverse order (V2 values)"),
    ("random", "random order (V2 values)"),
]


def pct(e):
    if e is None:
        return "–"
    p, n = e["accuracy"], e["samples"]
    return f"{100 * p:.2f} ± {100 * math.sqrt(p * (1 - p) / n):.2f}"


def spread(vals):
    vals = [100 * v for v in vals]
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.2f} ± {sd:.2f} ({min(vals):.2f}..{max(vals):.2f})"


def fmt(x, digits=4):
    return "–" if x is None else f"{x:.{digits}g}"


def main():
    res = json.load(open(sys.argv[1]))
    rows = res["plans"]
    f = res["float"]
    print(f"Float32 model: {100 * f['accuracy']:.2f}% (loss {f['loss']:.4f}) on {f['samples']} test images.\n")
    print("| budget | method | size (bytes) | avg bits | predicted Ω | measured ½ΔwᵀHΔw | PTQ accuracy (%) | FT accuracy (%) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for budget in (2.0, 3.0, 4.0):
        for key, title in METHODS:
            sel = [r for r in rows if r["budget"] == budget and
                   (r["method"].startswith("random") if key == "random" else r["method"] == key)]
            if not sel:
                continue
            if key == "random":
                size = [r["size_bytes"] for r in sel]
                avg = [r["avg_bits"] for r in sel]
                ptq = [r["ptq"]["accuracy"] for r in sel if "ptq" in r]
                ft = [r["ft"]["accuracy"] for r in sel if "ft" in r]
                mo = [r["measured_omega"] for r in sel]
                print(f"| {budget:g} | {title}, {len(sel)} seeds | {min(size)}..{max(size)} | {min(avg):.3f}..{max(avg):.3f} "
                      f"| {statistics.mean([r['hessian_omega'] for r in sel]):.4g} | {statistics.mean(mo):.4g} "
                      f"| {spread(ptq) if ptq else '–'} | {spread(ft) if ft else '–'} |")
                continue
            r = sel[0]
            note = " (uniform chosen)" if r.get("uniform_chosen") else ""
            omega = r["hessian_omega"] if key in ("reverse", "equal") else r["predicted_omega"]
            print(f"| {budget:g} | {title}{note} | {r['size_bytes']} | {r['avg_bits']:.3f} | {fmt(omega)} "
                  f"| {fmt(r['measured_omega'])} | {pct(r.get('ptq'))} | {pct(r.get('ft'))} |")
            if key == "v1" and "ftstaged" in r:
                print(f"| {budget:g} | HAWQ-V1, staged fine-tuning (2 stages) | | | | | | {pct(r['ftstaged'])} |")
    print()
    for label in ("v2-b3", "uniform-b3"):
        r = next((x for x in rows if x["label"] == label), None)
        if r and all(k in r for k in ("ft", "ft-s2", "ft-s3")):
            print(f"- fine-tuning seeds 1-3, {label}: " + spread([r[k]["accuracy"] for k in ("ft", "ft-s2", "ft-s3")]))
    for label, title in (("wa-uniform44", "uniform W4A4"), ("wa-joint", "joint weight/activation plan")):
        r = next((x for x in rows if x["label"] == label), None)
        if r:
            print(f"- {title}: weights {r['bits']}, activations {r['act_bits']}, {r['bops'] / 1e6:.2f} MBOPs, "
                  f"{r['size_bytes']} bytes: PTQ {pct(r.get('ptq'))}, FT {pct(r.get('ft'))}")
    print("\nBit widths (model order):\n")
    for r in rows:
        if r["budget"] in (3.0, 4.0) and not r["method"].startswith("random"):
            print(f"- {r['label']}: {' '.join(map(str, r['bits']))}")


if __name__ == "__main__":
    main()
