#!/usr/bin/python3
"""Character language-model data from English text that every Debian machine has.

The text: the license texts in /usr/share/common-licenses (package base-files, which is Essential,
so it is on every Debian system; about 260 KB: GPL, LGPL, GFDL, Apache, MPL, Artistic, BSD, CC0),
read in name order, symlinks skipped. Characters are mapped to ids 0..V-1 in sorted order of the
characters that occur; the text is cut into non-overlapping windows of T + 1 characters, giving
input_ids [N, T] and next-character targets y [N, T] (int64), for

    curv train --arch gpt:64-2-4 --data OUT.npz --out charlm.h5
    curv eval charlm.h5 --data OUT.npz          # loss, token accuracy, perplexity

Usage: /usr/bin/python3 scripts/make_char_lm_data.py OUT.npz [--seq 64] [--test-fraction 0.1]
Writes OUT.npz (training windows) and OUT_test.npz (the last windows), and OUT_vocab.txt (the
characters, one id per line as a JSON string).
"""
import argparse
import json
import os

import numpy as np

SOURCE = "/usr/share/common-licenses"


def read_text():
    parts = []
    for name in sorted(os.listdir(SOURCE)):
        path = os.path.join(SOURCE, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            parts.append(f.read())
    return "\n".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--test-fraction", type=float, default=0.1)
    a = ap.parse_args()
    text = read_text()
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    n = (len(ids) - 1) // (a.seq + 1)
    win = ids[: n * (a.seq + 1)].reshape(n, a.seq + 1)
    x, y = win[:, :-1], win[:, 1:]
    n_test = max(1, int(n * a.test_fraction))
    base = a.out[:-4] if a.out.endswith(".npz") else a.out
    np.savez(base + ".npz", input_ids=x[:-n_test], y=y[:-n_test])
    np.savez(base + "_test.npz", input_ids=x[-n_test:], y=y[-n_test:])
    with open(base + "_vocab.txt", "w") as f:
        for c in vocab:
            f.write(json.dumps(c) + "\n")
    print("%d characters, vocabulary %d, %d training and %d test windows of %d" %
          (len(text), len(vocab), n - n_test, n_test, a.seq))


if __name__ == "__main__":
    main()
