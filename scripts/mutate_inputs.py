#!/usr/bin/python3
"""Mutation driver for curv's file loaders: corrupts valid inputs and runs the CLI on each mutant.

For each loader it makes a valid seed file (with the curv binary itself and the fixtures under
data/fixtures), then writes mutants (bit flips, overwritten bytes and words with boundary values,
truncations, zeroed or duplicated runs) and runs a curv command on each under a timeout and an
address-space limit. Outcomes:

  crash   the process died from a signal (SIGSEGV, SIGABRT, SIGFPE, SIGKILL by the OOM killer, ...)
  hang    it did not finish within --timeout seconds (default 30: above curv's own 10 s bound on
          walking an HDF5 file, see src/io/internal/hdf5_probe.h)
  exit    an exit status other than 0 (accepted) and 2 (rejected with a message)
  message exit 2, but the last line of stderr is not "curv: ..." or is a bare C++ exception text
          (e.g. "curv: std::bad_alloc", "curv: stoll"), or a library printed diagnostics (only
          curv's progress lines may precede the error, for failures found while training)

The contract (DESIGN.md "Errors") is 0 of each. Mutants with a bad outcome are kept in --keep so
they can be replayed: `curv info KEPT.h5`.

Usage:
  /usr/bin/python3 scripts/mutate_inputs.py --curv build/tools/curv [--loaders checkpoint,h5data,...]
      [--count 2000] [--seed 1] [--timeout 10] [--jobs 2] [--keep /tmp/curv_mutants]

Loaders: checkpoint (curv info + eval of a converted ONNX model), trainstate (curv train resuming a
training checkpoint), h5data (.h5 dataset), npz (.npz dataset), idx (IDX images, raw), idxgz (IDX
images, gzip). Exit status 0 when every loader met the contract, 1 otherwise.
"""
import argparse
import concurrent.futures
import gzip
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIX = os.path.join(ROOT, "data", "fixtures")
MEMORY_LIMIT = 4 << 30  # bytes of address space per run: a huge allocation fails instead of swapping

INTERESTING_WORDS = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                     1 << 32, 1 << 40, (1 << 62), (1 << 63) - 1, (1 << 64) - 1]


# What a C++ exception says when nothing named the file: such a message fails the contract.
BARE_MESSAGES = ["std::bad_alloc", "bad_array_new_length", "stoll", "stoul", "stoi", "stod", "vector::", "basic_string",
                 "map::at", "unordered_map", "bad_variant_access", "bad_optional_access", "HDF5-DIAG"]


def run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


# ---- seeds -----------------------------------------------------------------------------------
# Each loader: (seed file name in the work dir, how to make it, command template over MUTANT).


def make_seeds(curv, work):
    """Writes the seed files into `work`; returns {loader: (seed_path, argv_builder, extra files)}."""
    loaders = {}
    data_h5 = os.path.join(FIX, "io", "data.h5")  # x [6, 1, 4, 4] uint8, y [6] int64

    ckpt = os.path.join(work, "seed_ckpt.h5")
    run([curv, "convert", os.path.join(FIX, "cnn_bn.onnx"), ckpt])
    cnn_data = os.path.join(FIX, "cnn_bn.npz")
    loaders["checkpoint"] = (ckpt, lambda m, d: [[curv, "info", m], [curv, "eval", m, "--data", cnn_data]])

    # ONNX: the protobuf of the same CNN (its attributes, shapes and initializers), then a convert.
    onnx_seed = os.path.join(work, "seed_model.onnx")
    shutil.copy(os.path.join(FIX, "cnn_bn.onnx"), onnx_seed)
    loaders["onnx"] = (onnx_seed, lambda m, d: [[curv, "info", m], [curv, "eval", m, "--data", cnn_data],
                                                [curv, "convert", m, os.path.join(d, "converted.h5")]])

    train = os.path.join(work, "seed_train.h5")
    run([curv, "train", "--arch", "mlp:8", "--data", data_h5, "--epochs", "1", "--batch-size", "3",
         "--optimizer", "adam", "--log-curvature", "1", "--curvature-top", "2", "--curvature-probes", "2",
         "--out", train])
    loaders["trainstate"] = (train, lambda m, d: [[curv, "train", m, "--data", data_h5, "--epochs", "2",
                                                   "--out", os.path.join(d, "resumed.h5")]])

    # The dataset loaders run a fixed model ([1, 4, 4] inputs, 6 classes), so that a mutated label
    # meets the model's range check rather than sizing an --arch model.
    model = os.path.join(work, "model_1x4x4_6.h5")
    run([curv, "train", "--arch", "mlp:8", "--data", data_h5, "--epochs", "1", "--out", model])
    evaluate = lambda m, d: [[curv, "eval", model, "--data", m]]

    h5data = os.path.join(work, "seed_data.h5")
    shutil.copy(data_h5, h5data)
    loaders["h5data"] = (h5data, evaluate)

    npz = os.path.join(work, "seed_data.npz")
    shutil.copy(os.path.join(FIX, "io", "u8_labels.npz"), npz)
    loaders["npz"] = (npz, evaluate)

    # IDX: the images file is mutated, its labels file is copied beside each mutant.
    images = os.path.join(work, "seed-images-idx3-ubyte")
    shutil.copy(os.path.join(FIX, "io", "tiny-images-idx3-ubyte"), images)
    labels = os.path.join(FIX, "io", "tiny-labels-idx1-ubyte")
    loaders["idx"] = (images, evaluate, labels)

    images_gz = os.path.join(work, "seed-images-idx3-ubyte.gz")
    with open(os.path.join(FIX, "io", "tiny-images-idx3-ubyte"), "rb") as f, gzip.open(images_gz, "wb") as g:
        g.write(f.read())
    loaders["idxgz"] = (images_gz, evaluate, labels)
    return loaders


# ---- mutations -------------------------------------------------------------------------------


def mutate(data, rng):
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        if not b:
            break
        op = rng.random()
        pos = rng.randrange(len(b))
        if op < 0.30:  # flip one bit
            b[pos] ^= 1 << rng.randrange(8)
        elif op < 0.50:  # one byte: random or boundary value
            b[pos] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op < 0.80:  # a little-endian or big-endian word with a boundary value
            width = rng.choice([2, 4, 8])
            v = rng.choice(INTERESTING_WORDS) & ((1 << (8 * width)) - 1)
            if rng.random() < 0.3:
                v = (v + rng.choice([-1, 1])) & ((1 << (8 * width)) - 1)
            w = v.to_bytes(width, rng.choice(["little", "big"]))
            b[pos:pos + width] = w[:len(b) - pos] if pos + width > len(b) else w
        elif op < 0.87:  # zero a run
            n = rng.randrange(1, 64)
            b[pos:pos + n] = bytes(min(n, len(b) - pos))
        elif op < 0.94:  # copy a run from elsewhere
            n = rng.randrange(1, 32)
            src = rng.randrange(len(b))
            chunk = b[src:src + n]
            b[pos:pos + len(chunk)] = chunk[:len(b) - pos]
        else:  # truncate
            del b[rng.randrange(max(1, len(b) // 2), len(b)):]
    return bytes(b)


# ---- running ---------------------------------------------------------------------------------


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def classify(argv, mutant, timeout):
    try:
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
                           preexec_fn=limit_memory, cwd=os.path.dirname(mutant))
    except subprocess.TimeoutExpired:
        return "hang", ""
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode < 0:
        return "crash", "signal %d: %s" % (-p.returncode, err.strip()[-300:])
    if p.returncode not in (0, 2):
        return "exit", "status %d: %s" % (p.returncode, err.strip()[-300:])
    if p.returncode == 2:
        # The error is the last line; lines before it may only be curv's own progress lines (a
        # failure found while training), never a library's diagnostics.
        lines = err.rstrip("\n").split("\n")  # line feeds only: a name may hold U+0085 or U+2028
        last = lines[-1] if lines else ""
        if (not last.startswith("curv: ") or any(b in last for b in BARE_MESSAGES) or "HDF5" in err.replace(last, "")
                or any(l.startswith("curv: ") for l in lines[:-1])):
            return "message", err.strip()[-300:]
    return "ok" if p.returncode == 0 else "rejected", ""


def one(job):
    loader, i, seed_path, argvs, extra, data, keep, timeout = job
    d = tempfile.mkdtemp(prefix="curv_mut_")
    try:
        mutant = os.path.join(d, os.path.basename(seed_path).replace("seed", "m%05d" % i, 1))
        with open(mutant, "wb") as f:
            f.write(data)
        if extra:
            # IDX labels: named after the mutant as curv derives it.
            gz = ".gz" if mutant.endswith(".gz") else ""
            shutil.copy(extra, os.path.join(d, os.path.basename(mutant).split("-images")[0] + "-labels-idx1-ubyte" + gz))
        worst, detail = "ok", ""
        order = ["ok", "rejected", "message", "exit", "hang", "crash"]
        for argv in argvs(mutant, d):
            outcome, det = classify(argv, mutant, timeout)
            if order.index(outcome) > order.index(worst):
                worst, detail = outcome, "%s -> %s" % (" ".join(os.path.basename(a) for a in argv[1:3]), det)
        if worst in ("message", "exit", "hang", "crash") and keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(mutant, os.path.join(keep, "%s_%s_%s" % (loader, worst, os.path.basename(mutant))))
        return loader, worst, detail, mutant
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--curv", default=os.path.join(ROOT, "build", "tools", "curv"))
    ap.add_argument("--loaders", default="onnx,checkpoint,trainstate,h5data,npz,idx,idxgz")
    ap.add_argument("--count", type=int, default=2000, help="mutants per loader")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a run counts as a hang")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", default="", help="folder for mutants with a bad outcome")
    ap.add_argument("--verbose", action="store_true", help="print every bad outcome")
    a = ap.parse_args()
    curv = os.path.abspath(a.curv)
    work = tempfile.mkdtemp(prefix="curv_seeds_")
    try:
        loaders = make_seeds(curv, work)
        total_bad = 0
        print("%-11s %8s %6s %6s %6s %8s %9s %6s" % ("loader", "mutants", "crash", "hang", "exit", "message",
                                                     "rejected", "ok"))
        for name in a.loaders.split(","):
            seed_path, argvs, *extra = loaders[name]
            extra = extra[0] if extra else None
            with open(seed_path, "rb") as f:
                seed = f.read()
            rng = random.Random("%s-%d" % (name, a.seed))
            jobs = [(name, i, seed_path, argvs, extra, mutate(seed, rng), a.keep, a.timeout) for i in range(a.count)]
            counts = {k: 0 for k in ["crash", "hang", "exit", "message", "rejected", "ok"]}
            with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
                for loader, outcome, detail, mutant in ex.map(one, jobs):
                    counts[outcome] += 1
                    if a.verbose and outcome not in ("ok", "rejected"):
                        print("  %s %s: %s" % (outcome, os.path.basename(mutant), detail), file=sys.stderr)
            bad = counts["crash"] + counts["hang"] + counts["exit"] + counts["message"]
            total_bad += bad
            print("%-11s %8d %6d %6d %6d %8d %9d %6d" % (name, a.count, counts["crash"], counts["hang"],
                                                         counts["exit"], counts["message"], counts["rejected"],
                                                         counts["ok"]), flush=True)
        return 1 if total_bad else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
