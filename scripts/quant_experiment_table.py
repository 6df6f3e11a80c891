#!/usr/bin/python3
"""Markdown table of one model's results.json from scripts/quant_experiment.sh.

    /usr/bin/python3 scripts/quant_experiment_table.py out/quant_exp/<name>/results.json

One row per budget and method: size in bytes, average weight bits, Omega predicted with the
measured sensitivities of the row's kind (eig rows: lambda_max, the others: trace), and the
test accuracy / loss on the full test set. Random plans: mean over seeds, with min..max. Then
one line of reference points: the float32 model, uniform 2 bits, the other HAWQ-V2 budgets.
"""
import json
import statistics
import sys

NAMES = [("trace", "hessian", "HAWQ-V2 (trace)"), ("eig", "hessian", "HAWQ-V1 (eig)"),
         ("uniform", None, "uniform"), ("trace", "random", "random order (trace values)"),
         ("trace", "reverse", "reverse order (trace)"), ("eig", "reverse", "reverse order (eig)")]


def method(row):
    if row["label"].startswith("uniform"):
        return ("uniform", None)
    return (row["sensitivity"], row["order"])


def main():
    res = json.load(open(sys.argv[1]))
    rows = res["plans"]
    print("| avg-bits budget | plan | size (bytes) | avg bits | predicted Ω (measured s) | test accuracy | test loss |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for budget in sorted({r["budget_avg_bits"] for r in rows if r["budget_avg_bits"] in (3.0, 4.0)}):
        for kind, order, title in NAMES:
            sel = [r for r in rows if r["budget_avg_bits"] == budget and method(r) == (kind, order)]
            if not sel:
                continue
            if len(sel) == 1:
                r = sel[0]
                print(f"| {budget:g} | {title} | {r['size_bytes']} | {r['avg_bits']:.3f} | {r['measured_omega']:.4g} "
                      f"| {100 * r['accuracy']:.2f}% | {r['loss']:.4f} |")
            else:
                acc = [100 * r["accuracy"] for r in sel]
                size = [r["size_bytes"] for r in sel]
                avg = [r["avg_bits"] for r in sel]
                om = [r["measured_omega"] for r in sel]
                loss = [r["loss"] for r in sel]
                print(f"| {budget:g} | {title}, {len(sel)} seeds | {min(size)}..{max(size)} | "
                      f"{min(avg):.3f}..{max(avg):.3f} | {statistics.mean(om):.4g} ({min(om):.3g}..{max(om):.3g}) | "
                      f"{statistics.mean(acc):.2f}% ({min(acc):.2f}..{max(acc):.2f}) | {statistics.mean(loss):.4f} |")

    ref = [f"float32 model {100 * res['float']['accuracy']:.2f}% (loss {res['float']['loss']:.4f})"]
    ref += [f"uniform 2-bit {r['size_bytes']} bytes, {100 * r['accuracy']:.2f}% (loss {r['loss']:.4f})"
            for r in rows if r["label"] == "uniform-b2"]
    ref += [f"HAWQ-V2 at avg-bits {r['budget_avg_bits']:g}: {r['size_bytes']} bytes ({r['avg_bits']:.3f} bits), "
            f"{100 * r['accuracy']:.2f}%" for r in rows
            if r["sensitivity"] == "trace" and r["order"] == "hessian" and r["budget_avg_bits"] not in (2.0, 3.0, 4.0)
            and not r["label"].startswith("uniform")]
    print("\nReference: " + "; ".join(ref) + ".")


if __name__ == "__main__":
    main()
