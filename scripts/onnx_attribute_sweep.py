#!/usr/bin/python3
"""Attribute sweep: a structure-aware mutator of ONNX node attributes.

    /usr/bin/python3 scripts/onnx_attribute_sweep.py [--curv build/tools/curv] [--timeout 20]
                                                     [--jobs 2] [--keep DIR] [MODEL.onnx ...]

Takes the small fixture models (default: data/fixtures/*.onnx and the loadable ones in
data/fixtures/io/), and for every integer or float attribute (scalar or list) of every node writes
one mutant per value 0, -1, 1, 2^31 and 2^62 (lists: every element set to the value) plus one with
the attribute removed. Each mutant runs through `curv info MUTANT` and `curv eval MUTANT --data
FIXTURE.npz` under a timeout, and every run is classified by its exit:

  ok        exit 0
  rejected  exit 2 with one line on stderr (the contract for bad input)
  crash     killed by a signal (SIGSEGV, SIGABRT, SIGFPE, ...); a sanitizer build reports heap
            corruption here too (ASan exits 1 with "ERROR: AddressSanitizer": counted as crash)
  hang      still running at the timeout
  other     any other exit status, or exit 2 with several stderr lines

Prints the counts per command and one line per crash / hang / other (model, node, attribute,
value, outcome). `--keep DIR` keeps the mutants that did not end ok or rejected.

`--fuzzer build-fuzz/fuzz/fuzz_onnx` replays every mutant through the ONNX fuzz target instead
(ASan + UBSan, and the evaluate / gradient / HVP / convert steps after loading; see
fuzz/fuzz_targets.cpp): heap corruption that a Release `curv eval` survives with exit 0 shows up
there. Outcomes are then `ok` (loaded and ran), `rejected` (clean error) and `crash`.

Needs the onnx Python package (Debian python3-onnx).
"""
import argparse
import concurrent.futures
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import onnx
from onnx import AttributeProto

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALUES = [0, -1, 1, 2**31, 2**62]
INT64_MAX = 2**63 - 1


def default_models():
    models = sorted(glob.glob(os.path.join(ROOT, "data", "fixtures", "*.onnx")))
    for n in ["linear", "clip_split", "fixed_batch", "opset11", "opset12", "zero_pad"]:
        models.append(os.path.join(ROOT, "data", "fixtures", "io", n + ".onnx"))
    return models


def data_for(model):
    npz = model[:-5] + ".npz"
    return npz if os.path.exists(npz) else None


def mutants(model_path):
    """Yields (description, ModelProto) for every attribute mutation of the model."""
    base = onnx.load(model_path)
    for ni, node in enumerate(base.graph.node):
        for ai, attr in enumerate(node.attribute):
            if attr.type not in (AttributeProto.INT, AttributeProto.FLOAT, AttributeProto.INTS, AttributeProto.FLOATS):
                continue
            label = f"{node.name or node.op_type + str(ni)} ({node.op_type}).{attr.name}"
            for v in VALUES + ["removed"]:
                m = onnx.ModelProto()
                m.CopyFrom(base)
                a = m.graph.node[ni].attribute[ai]
                if v == "removed":
                    del m.graph.node[ni].attribute[ai]
                elif a.type == AttributeProto.INT:
                    a.i = min(v, INT64_MAX)
                elif a.type == AttributeProto.FLOAT:
                    a.f = float(v)
                elif a.type == AttributeProto.INTS:
                    a.ints[:] = [min(v, INT64_MAX)] * max(1, len(a.ints))
                else:
                    a.floats[:] = [float(v)] * max(1, len(a.floats))
                yield f"{label}={v}", m


def classify(proc_rc, stderr, timed_out):
    if timed_out:
        return "hang"
    if proc_rc < 0:
        return "crash:" + signal.Signals(-proc_rc).name
    if "ERROR: AddressSanitizer" in stderr or "runtime error:" in stderr:
        return "crash:sanitizer"
    if proc_rc == 0:
        return "ok"
    if proc_rc == 2 and len(stderr.strip().splitlines()) == 1:
        return "rejected"
    return f"other:exit{proc_rc}"


def run_one(curv, timeout, path, data, cmd):
    args = [curv, "info", path] if cmd == "info" else [curv, "eval", path, "--data", data, "--threads", "1"]
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, errors="replace")
        return classify(p.returncode, p.stderr, False), p.stderr.strip().splitlines()[-1:] or [""]
    except subprocess.TimeoutExpired:
        return "hang", [""]


def replay_fuzzer(a, jobs, counts, findings):
    """Runs the mutants through the fuzz target, one process per mutant (a crash ends a process)."""
    seen = set()
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
               CURV_FUZZ_VERBOSE="1")
    for stem, desc, path, cmd, _ in jobs:
        if path in seen:
            continue
        seen.add(path)
        try:
            p = subprocess.run([a.fuzzer, "-timeout=%d" % a.timeout, "-rss_limit_mb=2048", "-malloc_limit_mb=512", path],
                               capture_output=True, text=True, timeout=a.timeout + 30, errors="replace", env=env)
            if p.returncode == 0:
                kind = "rejected" if "curv-fuzz: load:" in p.stderr else "ok"
            else:
                kind = "crash"
                what = [l for l in p.stderr.splitlines()
                        if "FINDING" in l or "ERROR:" in l or "runtime error" in l or "deadly signal" in l]
                frames = [l.split(" in ", 1)[1] for l in p.stderr.splitlines()
                          if l.strip().startswith("#") and " in curv::" in l]
                findings.append((stem, desc, "fuzz", "crash", ((what or [""])[0] + " at " + (frames or [""])[0])[:300],
                                 path))
        except subprocess.TimeoutExpired:
            kind = "hang"
            findings.append((stem, desc, "fuzz", "hang", "", path))
        counts.setdefault("fuzz", {}).setdefault(kind, 0)
        counts["fuzz"][kind] += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--curv", default=os.path.join(ROOT, "build", "tools", "curv"))
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", help="folder for the mutants that crashed, hung or ended otherwise")
    ap.add_argument("--fuzzer", help="replay the mutants through this fuzz_onnx binary instead of curv")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    models = a.models or default_models()
    tmp = tempfile.mkdtemp(prefix="curv-sweep-")
    jobs = []
    for model in models:
        data = data_for(model)
        stem = os.path.basename(model)[:-5]
        for k, (desc, m) in enumerate(mutants(model)):
            path = os.path.join(tmp, f"{stem}.{k:04d}.onnx")
            onnx.save(m, path)
            jobs.append((stem, desc, path, "info", data))
            if data:
                jobs.append((stem, desc, path, "eval", data))
    counts = {}
    findings = []
    mutant_count = len({j[2] for j in jobs})
    if a.fuzzer:
        replay_fuzzer(a, jobs, counts, findings)
        jobs = []
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        futs = {ex.submit(run_one, a.curv, a.timeout, j[2], j[4], j[3]): j for j in jobs}
        for f in concurrent.futures.as_completed(futs):
            stem, desc, path, cmd, _ = futs[f]
            outcome, last = f.result()
            kind = outcome.split(":")[0]
            counts.setdefault(cmd, {}).setdefault(kind, 0)
            counts[cmd][kind] += 1
            if kind not in ("ok", "rejected"):
                findings.append((stem, desc, cmd, outcome, last[0][:160], path))
    runner = f"fuzz target {a.fuzzer}" if a.fuzzer else f"curv = {a.curv}"
    print(f"attribute sweep: {mutant_count} mutants of {len(models)} models, {runner}")
    kinds = ["ok", "rejected", "crash", "hang", "other"]
    print(f"{'command':8} {'runs':>6} " + " ".join(f"{k:>9}" for k in kinds))
    for cmd in sorted(counts):
        c = counts[cmd]
        print(f"{cmd:8} {sum(c.values()):6d} " + " ".join(f"{c.get(k, 0):9d}" for k in kinds))
    for stem, desc, cmd, outcome, last, path in sorted(findings):
        print(f"  {outcome:18} {cmd:4} {stem}: {desc}   | {last}")
    if a.keep and findings:
        os.makedirs(a.keep, exist_ok=True)
        for stem, desc, cmd, outcome, last, path in findings:
            shutil.copy(path, a.keep)
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
