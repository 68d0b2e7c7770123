#!/usr/bin/python3
"""Generates reference.json: scipy results that drift's tests must match.

Run once with Debian's scipy (apt-get install python3-scipy), from drift/:
    /usr/bin/python3 testdata/gen_reference.py > testdata/reference.json
The Go tests read the JSON only; they never need Python.
"""
import json
import sys

import numpy as np
import scipy
from scipy import stats
from scipy.spatial import distance


def r4(a):
    # Rounded so the JSON is small and scipy sees exactly what Go reads.
    return [round(float(v), 4) for v in a]


def main():
    rng = np.random.default_rng(20240601)
    out = {"scipy": scipy.__version__, "ks": [], "kstwo": [], "chi2": [],
           "mannwhitney": [], "jensenshannon": [], "wasserstein": []}

    # Two-sample KS on raw values, both modes; sizes and shifts chosen to
    # reach every branch of kstwo.sf (Durbin, Pomeranz, Pelz-Good, smirnov).
    sizes = [(5, 7), (8, 8), (20, 20), (30, 45), (60, 61), (100, 80),
             (150, 150), (200, 310), (400, 350), (700, 1000), (1500, 1200)]
    for n1, n2 in sizes:
        for shift in (0.0, 0.15, 0.5, 1.2):
            a = r4(rng.normal(0, 1, n1))
            b = r4(rng.normal(shift, 1, n2))
            for mode in ("exact", "asymp"):
                res = stats.ks_2samp(a, b, method=mode)
                out["ks"].append({"a": a, "b": b, "mode": mode,
                                  "d": float(res.statistic), "p": float(res.pvalue)})
    # Ties: small integers (also exact in drift's histograms).
    for n1, n2 in [(40, 50), (300, 250), (64, 64)]:
        a = [float(v) for v in rng.integers(0, 20, n1)]
        b = [float(v) for v in rng.integers(2, 22, n2)]
        for mode in ("exact", "asymp"):
            res = stats.ks_2samp(a, b, method=mode)
            out["ks"].append({"a": a, "b": b, "mode": mode, "ints": True,
                              "d": float(res.statistic), "p": float(res.pvalue)})

    for n in (3, 10, 50, 140, 141, 400, 1000, 5000, 100001, 200000):
        for x in (0.01, 0.03, 0.05, 0.08, 0.1, 0.2, 0.3, 0.45, 0.6, 0.9):
            if n * x <= 0.5:
                continue
            out["kstwo"].append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})

    tables = [
        [[10, 20], [15, 5]],
        [[3, 0], [7, 2]],
        [[100, 30, 12], [90, 45, 7]],
        [[5, 0, 8, 1, 2], [3, 4, 0, 9, 2]],
        [[500, 200, 50, 25, 10, 5, 3, 1, 1, 0], [480, 230, 30, 40, 12, 2, 5, 0, 2, 4]],
        [[1000, 1], [990, 12]],
    ]
    for t in tables:
        for corr in (True, False):
            arr = np.array(t)
            keep = arr.sum(axis=0) > 0
            res = stats.chi2_contingency(arr[:, keep], correction=corr)
            out["chi2"].append({"ref": t[0], "cur": t[1], "yates": corr,
                                "stat": float(res[0]), "p": float(res[1]), "dof": int(res[2])})

    for n1, n2, lo2 in [(30, 40, 0), (200, 180, 1), (1000, 900, 0), (50, 60, 3)]:
        a = [int(v) for v in rng.integers(0, 30, n1)]
        b = [int(v) for v in rng.integers(lo2, 30 + lo2, n2)]
        res = stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=True,
                                 alternative="two-sided")
        out["mannwhitney"].append({"a": a, "b": b, "u": float(res.statistic),
                                   "p": float(res.pvalue)})
        out["wasserstein"].append({"a": a, "b": b,
                                   "w": float(stats.wasserstein_distance(a, b))})

    for p, q in [([10, 20, 30], [30, 20, 10]), ([1, 0, 5, 9], [0, 3, 5, 1]),
                 ([100, 100], [100, 100]), ([5, 0], [0, 5])]:
        out["jensenshannon"].append({"ref": p, "cur": q,
                                     "d": float(distance.jensenshannon(p, q))})

    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
