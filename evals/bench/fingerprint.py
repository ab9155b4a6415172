"""Fingerprint benchmark: selfheal vs drain3 (default TemplateMiner) on Loghub-2k.

    .venv/bin/python evals/bench/fingerprint.py [--data DIR] [--lines 200000] [--runs 3]

Prints, per dataset, grouping accuracy and lines/s of both side by side, the
means, then the whole-process comparison: `selfheal fingerprint FILE --json`
against a plain drain3 script doing the same job (mine every line, print each
line's cluster and final template as JSON), on a file of --lines lines built
by repeating the datasets' Content lines. Both run as subprocesses, best of
--runs, alternating.
"""

from __future__ import annotations

import sys

if len(sys.argv) == 3 and sys.argv[1] == "--drain3-script":
    # The plain drain3 script of the whole-process comparison (kept minimal).
    import json
    import logging

    from drain3 import TemplateMiner

    logging.disable(logging.CRITICAL)
    miner = TemplateMiner()
    with open(sys.argv[2], encoding="utf-8", errors="replace") as fh:
        ids = [miner.add_log_message(line.rstrip("\r\n"))["cluster_id"] for line in fh]
    clusters = miner.drain.id_to_cluster
    out = sys.stdout
    for n, cid in enumerate(ids, 1):
        out.write(json.dumps({"line": n, "cluster": cid, "template": clusters[cid].get_template()}) + "\n")
    sys.exit(0)

import argparse
import logging
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from agent.loghub import datasets, grouping_accuracy, read_dataset  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "loghub"


def selfheal_groups(contents: list[str]) -> list[str]:
    from agent.fingerprint import Fingerprinter

    return [fp for fp, _ in Fingerprinter().fingerprint_many(contents)]


def drain3_groups(contents: list[str]) -> list[int]:
    from drain3 import TemplateMiner

    miner = TemplateMiner()
    return [miner.add_log_message(c)["cluster_id"] for c in contents]


def timed(fn, contents: list[str], runs: int) -> tuple[list, float]:
    best = float("inf")
    result: list = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn(contents)
        best = min(best, time.perf_counter() - start)
    return result, best


def accuracy_table(data: Path, runs: int) -> None:
    print(f"Grouping accuracy on {data} (best of {runs} runs for lines/s)\n")
    header = f"{'dataset':<12}{'selfheal acc':>13}{'lines/s':>10}   {'drain3 acc':>11}{'lines/s':>10}"
    print(header)
    print("-" * len(header))
    sums = [0.0, 0.0, 0.0, 0.0]
    low = 1.0
    found = datasets(data)
    for name, path in found.items():
        contents, events = read_dataset(path)
        ours, t_ours = timed(selfheal_groups, contents, runs)
        theirs, t_theirs = timed(drain3_groups, contents, runs)
        row = [grouping_accuracy(events, ours), len(contents) / t_ours,
               grouping_accuracy(events, theirs), len(contents) / t_theirs]
        sums = [s + r for s, r in zip(sums, row)]
        low = min(low, row[0])
        print(f"{name:<12}{row[0]:>13.4f}{row[1]:>10.0f}   {row[2]:>11.4f}{row[3]:>10.0f}")
    n = len(found)
    print("-" * len(header))
    print(f"{'mean':<12}{sums[0] / n:>13.4f}{sums[1] / n:>10.0f}   {sums[2] / n:>11.4f}{sums[3] / n:>10.0f}")
    print(f"\nselfheal: mean {sums[0] / n:.4f} (target >= 0.90), lowest {low:.4f} (target >= 0.70)")


def build_file(data: Path, lines: int, dest: Path, unique: bool = False) -> None:
    contents: list[str] = []
    for path in datasets(data).values():
        contents.extend(c.replace("\n", " ").replace("\r", " ") for c in read_dataset(path)[0])
    with dest.open("w", encoding="utf-8") as fh:
        for i in range(lines):
            # unique: no line repeats exactly, so no cache keyed by the raw line helps
            fh.write(contents[i % len(contents)] + (f" id={i}\n" if unique else "\n"))


def run_process(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def process_comparison(data: Path, lines: int, runs: int, unique: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"loghub-{lines}.log"
        build_file(data, lines, path, unique)
        ours_argv = [sys.executable, "-m", "agent", "fingerprint", str(path), "--json"]
        theirs_argv = [sys.executable, str(Path(__file__).resolve()), "--drain3-script", str(path)]
        ours = theirs = float("inf")
        for _ in range(runs):
            ours = min(ours, run_process(ours_argv))
            theirs = min(theirs, run_process(theirs_argv))
    ratio = ours / theirs
    what = "Loghub Content lines each made unique by a trailing id=<n>" if unique else "repeated Loghub Content lines"
    print(f"\nWhole process on {lines} lines ({what}), best of {runs}:")
    print(f"  selfheal fingerprint --json : {ours:7.2f} s  ({lines / ours:,.0f} lines/s)")
    print(f"  drain3 script               : {theirs:7.2f} s  ({lines / theirs:,.0f} lines/s)")
    print(f"  ratio selfheal/drain3       : {ratio:7.2f}  (target <= 1.50) {'OK' if ratio <= 1.5 else 'SLOWER THAN TARGET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of <D>_2k.log_structured.csv files")
    parser.add_argument("--lines", type=int, default=200_000, help="lines of the whole-process comparison (0 skips it)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--unique", action="store_true", help="also compare on a file where no line repeats")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # drain3 logs every new cluster
    try:
        import drain3  # noqa: F401
    except ImportError:
        raise SystemExit("drain3 is not installed: pip install 'selfheal[bench]' (or drain3)") from None
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: not a directory of Loghub datasets")
    accuracy_table(args.data, max(1, args.runs))
    if args.lines > 0:
        process_comparison(args.data, args.lines, max(1, args.runs))
        if args.unique:
            process_comparison(args.data, args.lines, max(1, args.runs), unique=True)


if __name__ == "__main__":
    main()
