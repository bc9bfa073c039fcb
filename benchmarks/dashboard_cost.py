"""The dashboard's cost to a running search: candidates per minute with and without it open.

One run, two identical searches: same settings and seed in one database, on the embedded
digits data, inline executor, one torch thread, so both propose, train and score exactly
the same candidates (the inline search is deterministic). They advance in lockstep, one
candidate at a time (each step resumes the search with its budget raised by one): search
"off" while nobody looks at the dashboard, then search "on" while a client shows its
page, and so on. Both do the same work and the machine's speed drift is shared
candidate by candidate (which arm goes first alternates), so the comparison is paired.
An untimed third search evaluates one candidate first, to pay the one-off start-up costs.

`evonorm dashboard` serves the database from its own process, started once before the
searches. The client, also started and its page loaded before the searches: a real
headless Chromium showing search "on"'s page (it polls every 3 s and redraws the plots
on every change), or with `--client poller` a process requesting the page's data
endpoint on the same schedule. During "off" steps the client is suspended (SIGSTOP): it
makes no request and uses no CPU, and its start-up counts in no step.

Prints candidates per minute off and on, their ratio, the paired per-candidate time
difference, and the CPU seconds the dashboard server and the client used per minute.

    python benchmarks/dashboard_cost.py                  # 16 candidates per search
    python benchmarks/dashboard_cost.py --budget 6 --steps 50 --client poller   # quicker
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from db.store import SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.search.controller import SearchController
from workers.datasets import load_dataset
from workers.evaluate import evaluate
from workers.executors import InlineEvaluator

WARM_UP_SECONDS = 8.0
POLLER = """
import sys, time, urllib.request
url, interval = sys.argv[1], float(sys.argv[2])
etag = None
while True:
    request = urllib.request.Request(url, headers={"If-None-Match": etag} if etag else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            etag = response.headers.get("ETag")
            response.read()
    except urllib.error.HTTPError as error:  # 304: unchanged
        error.read()
    time.sleep(interval)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=16, help="candidates evaluated per search")
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: digits')")
    parser.add_argument("--client", choices=("auto", "browser", "poller"), default="auto",
                        help="who looks at the dashboard in 'on' phases (auto: browser if installed)")
    parser.add_argument("--interval", type=float, default=3.0, help="poll interval of --client poller")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and every live descendant (Chromium runs several)."""
    total, frontier = 0.0, [pid]
    while frontier:
        current = frontier.pop()
        total += cpu_seconds(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        frontier.extend(int(c) for c in children)
    return total


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


class Client:
    """Whoever looks at the dashboard. Started (and the page loaded) before the search, then
    stopped with SIGSTOP in 'off' phases and resumed in 'on' phases: a stopped client makes
    no request and uses no CPU, and the browser's start-up is not counted in any phase."""

    def __init__(self, kind: str, page: str, data: str, interval: float, profile: Path) -> None:
        if kind == "browser":
            command = [chromium() or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                       "--no-first-run", "--disable-background-networking", "--disable-sync",
                       "--disable-component-update", f"--user-data-dir={profile}",
                       "--remote-debugging-port=0", "--window-size=1300,2600", page]
        else:
            command = [sys.executable, "-c", POLLER, data, str(interval)]
        # Its own session, so that signals reach the browser's helper processes too.
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)

    def cpu(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def pause(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    kind = args.client if args.client != "auto" else ("browser" if chromium() else "poller")
    if kind == "browser" and chromium() is None:
        sys.exit("chromium is not installed: use --client poller")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    overrides: dict[str, object] = {"budget": args.budget, "population": args.population,
                                    "seed": args.seed, "train.threads": 1}
    if args.steps is not None:  # the quality check must fit in the shorter training
        default = SearchConfig().with_overrides(overrides).train
        overrides.update({"train.steps": args.steps,
                          "train.quality_steps": min(default.quality_steps, args.steps // 2)})
    config = SearchConfig().with_overrides(overrides)
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    cpu = {"server": 0.0, "client": 0.0, "server_off": 0.0}
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "cost.db"
        store = SearchStore.open(db, create=True)
        searches = {arm: store.create_search(arm, config.to_dict(), config.seed) for arm in ("off", "on")}
        server = subprocess.Popen(
            [sys.executable, "-c", "from evonorm_search.cli import main; main()", "dashboard",
             "--db", str(db), "--port", "0"], stderr=subprocess.PIPE, text=True)
        client = None
        try:
            line = server.stderr.readline()  # type: ignore[union-attr]
            match = re.search(r"at (http://\S+/)", line)
            if not match:
                sys.exit(f"the dashboard did not start: {line}")
            base, watched = match.group(1), searches["on"].id
            client = Client(kind, f"{base}search/{watched}", f"{base}api/search/{watched}",
                            args.interval, Path(directory) / "profile")
            time.sleep(WARM_UP_SECONDS)  # the page loaded once, as when a user opened it
            client.pause()
            print(f"dashboard at {base}; client: {kind} on search 'on'; {args.budget} candidates per "
                  "search, digits, inline executor, 1 torch thread", file=sys.stderr)
            evaluator = InlineEvaluator(evaluate, load_dataset(config.dataset))
            # Untimed: the first evaluation in a process pays one-off costs (lazy imports, caches).
            warm_up = store.create_search("warm-up", config.to_dict(), config.seed)
            SearchController(store, warm_up, replace(config, budget=1), evaluator).run()
            for step in range(1, args.budget + 1):
                for arm in ("off", "on") if step % 2 else ("on", "off"):  # neither always first
                    server_cpu, client_cpu = cpu_seconds(server.pid), client.cpu()
                    if arm == "on":
                        client.resume()
                    start = time.perf_counter()
                    final = SearchController(store, searches[arm], replace(config, budget=step),
                                             evaluator).run()
                    seconds[arm].append(time.perf_counter() - start)
                    if arm == "on":
                        client.pause()
                        cpu["server"] += cpu_seconds(server.pid) - server_cpu
                        cpu["client"] += client.cpu() - client_cpu
                    else:
                        cpu["server_off"] += cpu_seconds(server.pid) - server_cpu
                    if final.interrupted:
                        sys.exit("interrupted")
                print(f"  candidate {step}: off {seconds['off'][-1]:.1f} s, on {seconds['on'][-1]:.1f} s",
                      file=sys.stderr)
            same = [(c.graph_json, c.status, sorted(c.accuracies.items()))
                    for c in store.candidates(searches["off"].id)] == [
                   (c.graph_json, c.status, sorted(c.accuracies.items()))
                   for c in store.candidates(searches["on"].id)]
        finally:
            if client is not None:
                client.close()
            server.terminate()
            server.wait(30)
            store.close()

    off_minutes, on_minutes = sum(seconds["off"]) / 60, sum(seconds["on"]) / 60
    off_rate, on_rate = args.budget / off_minutes, args.budget / on_minutes
    differences = [b - a for a, b in zip(seconds["off"], seconds["on"])]
    spread = statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else math.nan
    print(f"same candidates and results in both searches: {'yes' if same else 'NO'}")
    print(f"without the dashboard open: {off_rate:.2f} candidates/min ({off_minutes:.2f} min; "
          f"dashboard server CPU {cpu['server_off'] / off_minutes:.2f} s/min)")
    print(f"with the dashboard open ({kind}): {on_rate:.2f} candidates/min ({on_minutes:.2f} min; "
          f"dashboard server CPU {cpu['server'] / on_minutes:.2f} s/min, {kind} CPU "
          f"{cpu['client'] / on_minutes:.2f} s/min)")
    print(f"ratio with/without: {on_rate / off_rate:.3f}; time per candidate with minus without: "
          f"{statistics.fmean(differences):+.2f} s (standard error {spread:.2f} s)")


if __name__ == "__main__":
    main()
