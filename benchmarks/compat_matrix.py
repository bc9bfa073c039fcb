"""The whole compatibility matrix (issue 19): every named layer and N random valid layers
(default 200, B and S space alternately) in both shipped forms, every cell of
`evonorm_search.compat` (ddp, compile with inductor, export, onnx, autocast, formats, eval).

Prints a pass/fail table (layer x cell; "FAIL(c,e)" names the failing forms, compiled and
exported), the totals per cell, the failures with their reasons, and the time per cell.
Exit status 1 when a cell failed. The onnx cell needs the optional extra
(`pip install -e ".[onnx]"`), else it is reported as skipped.

    python benchmarks/compat_matrix.py [--random 200] [--seed 0] [--cells ddp,compile,...]
        [--backend inductor] [--chunk 24]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings

import torch

from evonorm_search import compat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random", type=int, default=200, help="random valid layers (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random layers")
    parser.add_argument("--cells", default=",".join(compat.CELLS),
                        help=f"comma-separated subset of {','.join(compat.CELLS)}")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--chunk", type=int, default=24,
                        help="layers traced together by the compile/export/onnx cells")
    args = parser.parse_args(argv)
    cells = [c for c in args.cells.split(",") if c]
    torch.set_num_threads(1)
    # torch internals: deprecation notices and "torchvision is not installed" from torch.onnx.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    started = time.perf_counter()
    subjects = compat.known_subjects() + compat.random_subjects(args.random, args.seed)
    print(f"torch {torch.__version__}; {len(subjects)} layers ({args.random} random, seed "
          f"{args.seed}), 2 forms each; compile backend {args.backend}", flush=True)
    seconds: dict[str, float] = {}
    last = [time.perf_counter(), ""]

    def progress(cell: str) -> None:
        now = time.perf_counter()
        if last[1]:
            seconds[str(last[1])] = now - float(last[0])
        last[:] = [now, cell]
        print(f"  [{now - started:7.1f} s] {cell} ...", flush=True)

    results = compat.run_matrix(subjects, cells, backend=args.backend, chunk=args.chunk,
                                progress=progress)
    seconds[str(last[1])] = time.perf_counter() - float(last[0])
    print()
    print(compat.format_table(results))
    print()
    print("seconds per cell: " + ", ".join(f"{c} {s:.0f}" for c, s in seconds.items())
          + f"; total {time.perf_counter() - started:.0f}")
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
