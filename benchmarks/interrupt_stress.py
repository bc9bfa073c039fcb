"""Ctrl-C at a random moment: does `evonorm search` always stop cleanly and at once?

Starts planted searches (inline, EvoNorm-S0; their candidates take milliseconds, so most of
the main thread's time is spent in database transactions, where a badly placed
KeyboardInterrupt does harm), sends each SIGINT after a random 4-8 s, and sorts the
outcomes:

- clean: exit status 130 within the wait, no traceback on stderr;
- hung: still running after the wait (e.g. a stop waiting out the 30 s busy timeout on a
  write lock left held, docs/faults.md);
- messy: another exit status, or a traceback (a SIGINT that lands while Python is still
  importing the program counts here too; it does not involve the database).

    python benchmarks/interrupt_stress.py --runs 110 --parallel 2

Run it beside other load (e.g. the test suite) to widen the windows a signal can hit.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

EVONORM = Path(sys.executable).parent / "evonorm"


def _without_progress(err: str) -> str:
    """stderr without the progress lines (`[s] ...`), its last 3,000 characters."""
    return "\n".join(line for line in err.splitlines() if not line.startswith("[s] "))[-3000:]


def one_run(directory: Path, rng: random.Random, wait: float) -> tuple[str, str]:
    """(outcome, the end of stderr when it was not clean) of one interrupted search."""
    db = directory / "search.db"
    # A shell without job control starts background commands with SIGINT ignored, and the
    # child would inherit that (then Python installs no Ctrl-C handler): give it the default.
    process = subprocess.Popen(
        [str(EVONORM), "search", "--name", "s", "--db", str(db), "--executor", "inline",
         "--task", "planted", "--target", "evonorm_s0", "--budget", "1000000", "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(rng.uniform(4.0, 8.0))
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        return "hung", _without_progress(err)
    if process.returncode == 130 and "Traceback" not in err:
        return "clean", ""
    return "messy", f"exit {process.returncode}: {_without_progress(err)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--wait", type=float, default=45.0,
                        help="seconds a stop may take before it counts as hung")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.runs < 1 or args.parallel < 1 or args.wait <= 0:
        parser.error("--runs and --parallel must be >= 1, --wait > 0")
    outcomes: dict[str, int] = {"clean": 0, "hung": 0, "messy": 0}
    with tempfile.TemporaryDirectory() as scratch:
        def run(index: int) -> tuple[str, str]:
            directory = Path(scratch) / str(index)
            directory.mkdir()
            return one_run(directory, random.Random(args.seed * 100_003 + index), args.wait)

        with ThreadPoolExecutor(args.parallel) as pool:
            for index, (outcome, detail) in enumerate(pool.map(run, range(args.runs))):
                outcomes[outcome] += 1
                print(f"run {index}: {outcome}", flush=True)
                if detail:
                    print(detail, flush=True)
    print(f"{args.runs} interrupted searches: clean {outcomes['clean']}, hung {outcomes['hung']}, "
          f"messy {outcomes['messy']}")


if __name__ == "__main__":
    main()
