"""Which BLAS PyTorch's dense products run on, for the benchmarks that time PyTorch.

Debian's python3-torch calls the system BLAS (libblas.so.3, chosen by update-alternatives) for
its matrix products (Linear layers, attention's batched products, and convolutions it does not
hand to oneDNN). With only libblas3 installed that is the netlib reference implementation, a
plain triple loop tens of times slower than an optimized BLAS: a PyTorch timed on it would make
any comparison flatter curv. require_fast_blas() stops a benchmark in that case with the package
to install (libopenblas0-pthread, or libblis4-pthread), and blas_name() reports what is in use.
"""
import os
import sys

import torch


def blas_name():
    """Resolved path of the BLAS library mapped into this process after a matrix product."""
    a = torch.ones(64, 64)
    (a @ a).sum().item()  # makes sure the BLAS is loaded
    paths = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1] if len(line.split()) >= 6 else ""
            base = os.path.basename(p)
            if base.startswith(("libblas", "libopenblas", "libblis", "libmkl")):
                paths.add(os.path.realpath(p))
    return ", ".join(sorted(paths)) or "unknown"


def require_fast_blas(script):
    """Exits with status 2 when PyTorch would run on the netlib reference BLAS."""
    name = blas_name()
    if "/blas/libblas" in name and "openblas" not in name and "blis" not in name:
        sys.exit(f"{script}: PyTorch uses the reference BLAS ({name}), which would make PyTorch's times "
                 "meaningless; install an optimized one: apt-get install libopenblas0-pthread")
    return name


def set_blas_threads(n):
    """OpenBLAS keeps its own thread pool, which torch.set_num_threads does not size (Debian's
    PyTorch is built for a generic BLAS): give it the benchmark's thread count too."""
    import ctypes
    for lib in ("libopenblas.so.0", "libblis.so.4"):
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for fn in ("openblas_set_num_threads", "bli_thread_set_num_threads"):
            if hasattr(handle, fn):
                getattr(handle, fn)(int(n))
                return
