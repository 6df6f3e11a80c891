#!/usr/bin/python3
"""Writes the seed corpus of the libFuzzer targets into fuzz/corpus/<target>/.

    /usr/bin/python3 scripts/make_fuzz_corpus.py [CURV_BINARY]

Every seed is a small valid input, so the fuzzer starts from files that load and mutates from
there. Targets and what their inputs are (fuzz/fuzz_main.cpp):
  onnx        .onnx files: the tiny fixtures in data/fixtures (copied)
  npz         .npz datasets: float / uint8 / int x, labels or float targets, stored and deflated
  h5data      .h5 datasets /x and /y: contiguous, chunked and gzip-compressed
  idx         a 4-byte little-endian length, the IDX images file, then the labels file
  checkpoint  curv checkpoints written by `curv convert` (needs the curv binary, default
              build/tools/curv) and by `curv train` (with /train and /history)
  runfile     run files of `curv study` (F.h5.runs/*.run, recorded HDF5 writes): a spectrum run
              (top and bottom eigenvalues, trace) and an eval run of a 4-unit MLP (needs curv)
Needs numpy and h5py (Debian python3-numpy, python3-h5py). The whole corpus stays well under 1 MB.
"""
import gzip
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def target_dir(name):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def rng():
    return np.random.default_rng(12)


def onnx_seeds():
    d = target_dir("onnx")
    fixtures = os.path.join(ROOT, "data", "fixtures")
    names = ["mlp.onnx", "mlp_mse.onnx", "cnn_bn.onnx", "cnn_bn_fused.onnx", "resblock_fused.onnx",
             "attention_op13.onnx", "attention_op17.onnx", "io/linear.onnx", "io/clip_split.onnx",
             "io/opset11.onnx", "io/zero_pad.onnx"]
    for n in names:
        shutil.copy(os.path.join(fixtures, n), os.path.join(d, os.path.basename(n)))


def npz_bytes(compressed, **arrays):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def npz_seeds():
    d = target_dir("npz")
    r = rng()
    seeds = {
        "f4_labels.npz": npz_bytes(False, x=r.standard_normal((4, 1, 2, 2)).astype("<f4"),
                                   y=np.array([0, 1, 2, 1], "<i8")),
        "u1_i4.npz": npz_bytes(False, x=r.integers(0, 255, (3, 4)).astype("|u1"), y=np.array([1, 0, 1], "<i4")),
        "f8_targets.npz": npz_bytes(False, x=r.standard_normal((3, 3)), y=r.standard_normal((3, 2)).astype("<f4")),
        "deflated.npz": npz_bytes(True, x=r.standard_normal((4, 2, 3)).astype("<f4"), y=np.array([0, 1, 0, 1], "|u1")),
    }
    for name, b in seeds.items():
        open(os.path.join(d, name), "wb").write(b)


def h5_seeds():
    d = target_dir("h5data")
    r = rng()

    def write(name, x, y, **kw):
        with h5py.File(os.path.join(d, name), "w", track_order=False) as f:
            f.create_dataset("x", data=x, track_times=False, **kw)
            f.create_dataset("y", data=y, track_times=False, **kw)

    write("f4_labels.h5", r.standard_normal((4, 1, 2, 2)).astype("<f4"), np.array([0, 1, 2, 1], "<i8"))
    write("u1_targets.h5", r.integers(0, 255, (3, 4)).astype("|u1"), r.standard_normal((3, 2)).astype("<f8"))
    write("chunked_gzip.h5", r.standard_normal((4, 3)).astype("<f4"), np.array([1, 0, 1, 0], "<i4"),
          chunks=True, compression="gzip")


def idx_file(dims, payload):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", n) for n in dims) + payload


def idx_seeds():
    d = target_dir("idx")
    r = rng()
    images = idx_file([3, 2, 2], r.integers(0, 255, 12).astype("u1").tobytes())
    labels = idx_file([3], bytes([0, 9, 4]))
    gz_images = gzip.compress(images, mtime=0)
    for name, im, lb in [("plain.idx", images, labels), ("gzip.idx", gz_images, gzip.compress(labels, mtime=0))]:
        open(os.path.join(d, name), "wb").write(struct.pack("<I", len(im)) + im + lb)


def checkpoint_seeds(curv):
    d = target_dir("checkpoint")
    fixtures = os.path.join(ROOT, "data", "fixtures")
    for n in ["mlp.onnx", "cnn_bn.onnx"]:
        out = os.path.join(d, n.replace(".onnx", ".h5"))
        subprocess.run([curv, "convert", os.path.join(fixtures, n), out], check=True, stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "d.npz")
        r = rng()
        open(data, "wb").write(npz_bytes(False, x=r.standard_normal((8, 3)).astype("<f4"),
                                         y=np.array([0, 1, 2, 0, 1, 2, 0, 1], "<i8")))
        subprocess.run([curv, "train", "--arch", "mlp:4", "--data", data, "--epochs", "1", "--batch-size", "4",
                        "--optimizer", "adam", "--lr", "0.01", "--out", os.path.join(d, "trained_mlp.h5")],
                       check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def runfile_seeds(curv):
    d = target_dir("runfile")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "d.npz")
        r = rng()
        open(data, "wb").write(npz_bytes(False, x=r.standard_normal((16, 3)).astype("<f4"),
                                         y=np.array([0, 1, 2, 0] * 4, "<i8")))
        study = os.path.join(tmp, "s.json")
        open(study, "w").write(
            '{"defaults": {"arch": "mlp:4", "data": "d.npz", "seed": 1},'
            ' "runs": [{"kind": "spectrum", "name": "spectrum", "top_k": 2, "bottom_k": 1, "trace_probes": 4,'
            ' "save_vectors": false}, {"kind": "eval", "name": "eval"}]}')
        subprocess.run([curv, "study", study, "--out", os.path.join(tmp, "o.h5"), "--threads", "1"], check=True,
                       stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        runs = os.path.join(tmp, "o.h5.runs")
        for f in sorted(os.listdir(runs)):
            if f.endswith(".run"):
                shutil.copy(os.path.join(runs, f), os.path.join(d, f.split(".")[0] + ".run"))


def main():
    curv = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "tools", "curv")
    onnx_seeds()
    npz_seeds()
    h5_seeds()
    idx_seeds()
    checkpoint_seeds(curv)
    runfile_seeds(curv)
    total = sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(OUT) for f in fs)
    print(f"fuzz/corpus: {total} bytes")


if __name__ == "__main__":
    main()
