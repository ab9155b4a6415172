"""Grouping accuracy on Loghub-format datasets.

A line is correct when the set of lines sharing its predicted group equals the
set of lines sharing its ground-truth EventId; accuracy is the fraction of
correct lines (the definition in the Loghub README, as in logpai's evaluator).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence

from agent.errors import InputError

SUFFIX = "_2k.log_structured.csv"


def grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Fraction of lines whose predicted group has exactly the lines of their true group."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} truth labels but {len(predicted)} predictions")
    if not truth:
        return 0.0
    truth_size = Counter(truth)
    pred_size = Counter(predicted)
    pair_size = Counter(zip(predicted, truth))
    # A predicted group is exact when it holds one true label and all of it.
    correct = 0
    for (p, t), n in pair_size.items():
        if n == pred_size[p] and n == truth_size[t]:
            correct += n
    return correct / len(truth)


def read_dataset(path: str | Path) -> tuple[list[str], list[str]]:
    """(contents, event ids) of a `<D>_2k.log_structured.csv` file."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            for need in ("Content", "EventId"):
                if need not in fields:
                    raise InputError(f"{path}: missing column {need!r} (have {', '.join(fields) or 'none'})")
            contents, events = [], []
            for row in reader:
                contents.append(row["Content"] or "")
                events.append(row["EventId"] or "")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    return contents, events


def datasets(path: str | Path) -> dict[str, Path]:
    """Dataset name -> structured CSV, for every `<D>_2k.log_structured.csv` in a folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory")
    found = {p.name[: -len(SUFFIX)]: p for p in sorted(folder.glob(f"*{SUFFIX}"))}
    if not found:
        raise InputError(f"{folder}: no *{SUFFIX} files")
    return found


def selfheal_grouper() -> Callable[[Iterable[str]], list[str]]:
    from agent.fingerprint import Fingerprinter

    def group(contents: Iterable[str]) -> list[str]:
        return [fp for fp, _ in Fingerprinter().fingerprint_many(contents)]

    return group


def evaluate_dir(path: str | Path, grouper: Callable[[Iterable[str]], list[str]] | None = None) -> dict:
    """Per-dataset grouping accuracy (and lines/s) of a grouper, plus the mean.

    Returns {"datasets": {name: {"accuracy", "lines", "groups", "lines_per_s"}}, "mean_accuracy"}.
    """
    group = grouper or selfheal_grouper()
    results: dict[str, dict] = {}
    for name, csv_path in datasets(path).items():
        contents, events = read_dataset(csv_path)
        start = time.perf_counter()
        predicted = group(contents)
        elapsed = time.perf_counter() - start
        results[name] = {
            "accuracy": round(grouping_accuracy(events, predicted), 4),
            "lines": len(contents),
            "groups": len(set(predicted)),
            "lines_per_s": round(len(contents) / elapsed) if elapsed > 0 else None,
        }
    mean = sum(r["accuracy"] for r in results.values()) / len(results)
    return {"datasets": results, "mean_accuracy": round(mean, 4)}
