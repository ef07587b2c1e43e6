"""Benchmark dynamic_rlhf's online reward learner against River and Vowpal Wabbit.

All three learners walk the same preference stream in the same order, predicting each
pair before learning from it (progressive validation). The benchmark reports pairs per
second (featurisation plus update, median of the repetitions) and progressive accuracy.
On the HH-RLHF file it also fits a scikit-learn batch reference with 5-fold GroupKFold
and compares ``optimise_reward`` with the batch optimum on a seeded 80/20 split.

Run from the repository root::

    .venv/bin/python benchmarks/learner.py --quick --skip-real
    .venv/bin/python benchmarks/learner.py --out /tmp/learner.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _batch, _core, _data, _report  # noqa: E402
from benchmarks._contenders import (  # noqa: E402
    CONTENDER_NAMES,
    ContenderTiming,
    Runner,
    run_river,
    run_vowpalwabbit,
    sign_flips,
    time_contenders,
)

QUICK_PAIRS = 2000
# The first run of a learner in the process also pays for growing the heap and warming the
# caches. With five repetitions the median is never a first run, and one slow run on the
# shared machine moves it less.
DEFAULT_REPEATS = 5
QUICK_REAL_PAIRS = 500
SPEED_FACTOR_OVER_RIVER = 5.0
GAP_TARGET_POINTS = 1.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=None,
                        help="synthetic pairs in the stream (default 100000, 2000 with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions per learner, median reported (default 5, 1 with --quick)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="optimise_reward epochs on the HH-RLHF train split (default 3, 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stream, sign flips and splits")
    parser.add_argument("--quick", action="store_true",
                        help=f"small smoke run: {QUICK_PAIRS} synthetic pairs, "
                             f"{QUICK_REAL_PAIRS} HH-RLHF pairs, one C value")
    parser.add_argument("--skip-real", action="store_true", help="skip the HH-RLHF stream and batch reference")
    parser.add_argument("--hh-rlhf-path", type=Path, default=None,
                        help=f"HH-RLHF JSONL(.gz) file (default: ${_data.HH_RLHF_ENV}, else {_data.HH_RLHF_DEFAULT.resolve()})")
    parser.add_argument("--profile", action="store_true",
                        help="only profile dynamic_rlhf's learn_many on the synthetic stream (cProfile, "
                             "top functions by own time) and print the table")
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown", help="output format")
    parser.add_argument("--out", type=Path, default=None, help="write the result here instead of stdout")
    args = parser.parse_args(argv)

    if args.pairs is None:
        args.pairs = QUICK_PAIRS if args.quick else 100_000
    if args.repeats is None:
        args.repeats = 1 if args.quick else DEFAULT_REPEATS
    if args.epochs is None:
        args.epochs = 1 if args.quick else 3
    if args.pairs < 1 or args.repeats < 1 or args.epochs < 0:
        parser.error(f"invalid sizes: --pairs {args.pairs} and --repeats {args.repeats} must be >= 1, "
                     f"--epochs {args.epochs} must be >= 0")
    return args


def summarise(timing: ContenderTiming, pairs: int) -> dict[str, Any]:
    rates = [pairs / seconds for seconds in timing.seconds]
    assert timing.result is not None
    return {
        "name": timing.name,
        "seconds": timing.seconds,
        "seconds_median": statistics.median(timing.seconds),
        "pairs_per_second": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)},
        "accuracy": timing.result.accuracy,
        "correct": timing.result.correct,
        "results_differ_between_repeats": timing.results_differ,
    }


def evaluate_targets(contenders: dict[str, dict[str, Any]]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    core = contenders.get("dynamic_rlhf")
    if core is None or "error" in core:
        return {}, [{"name": "all", "met": False, "detail": "dynamic_rlhf was not measured"}]

    core_rate = core["pairs_per_second"]["median"]
    river_rate = contenders["river"]["pairs_per_second"]["median"]
    vw_rate = contenders["vowpalwabbit"]["pairs_per_second"]["median"]
    ratios = {"dynamic_rlhf / river pairs/s": core_rate / river_rate,
              "dynamic_rlhf / vowpalwabbit pairs/s": core_rate / vw_rate}
    best_baseline = max(contenders["river"]["accuracy"], contenders["vowpalwabbit"]["accuracy"])
    targets = [
        {"name": f"pairs/s >= {SPEED_FACTOR_OVER_RIVER:g}x River",
         "met": core_rate >= SPEED_FACTOR_OVER_RIVER * river_rate,
         "detail": f"{core_rate:,.0f} vs {SPEED_FACTOR_OVER_RIVER:g} x {river_rate:,.0f}"},
        {"name": "pairs/s >= Vowpal Wabbit", "met": core_rate >= vw_rate,
         "detail": f"{core_rate:,.0f} vs {vw_rate:,.0f}"},
        {"name": "progressive accuracy >= River and Vowpal Wabbit", "met": core["accuracy"] >= best_baseline,
         "detail": f"{core['accuracy']:.4f} vs best baseline {best_baseline:.4f}"},
    ]
    return ratios, targets


def measure_stream(name: str, source: str, pairs: list[_data.PairRecord], args: argparse.Namespace) -> dict[str, Any]:
    print(f"measuring {name}: {len(pairs):,} pairs x {args.repeats} repetition(s)", file=sys.stderr)
    flips = sign_flips(len(pairs), args.seed + 1)
    runners: dict[str, Runner] = {}
    unavailable = _core.core_unavailable_reason()
    if unavailable is None:
        # Building PreferenceExample values is input parsing, so it stays outside the timer.
        examples = _core.build_examples(pairs)
        _core.warm_up()
        runners["dynamic_rlhf"] = lambda: _core.run_dynamic_rlhf(examples)
        runners["dynamic_rlhf_learn_one"] = lambda: _core.run_dynamic_rlhf_one(examples)
    runners["river"] = lambda: run_river(pairs, flips)
    runners["vowpalwabbit"] = lambda: run_vowpalwabbit(pairs, flips)

    measured = {timing.name: summarise(timing, len(pairs)) for timing in time_contenders(runners, args.repeats)}
    if unavailable is not None:
        for name in ("dynamic_rlhf", "dynamic_rlhf_learn_one"):
            measured[name] = {"name": name, "error": unavailable}
    ratios, targets = evaluate_targets(measured)
    return {
        "name": name,
        "source": source,
        "pairs": len(pairs),
        "repeats": args.repeats,
        "contenders": [measured[contender] for contender in CONTENDER_NAMES],
        "ratios": ratios,
        "targets": targets,
    }


def batch_reference(pairs: list[_data.PairRecord], args: argparse.Namespace) -> dict[str, Any]:
    print(f"batch reference: {len(pairs):,} pairs", file=sys.stderr)
    c_grid = (0.1,) if args.quick else _batch.C_GRID
    featurise, dimension, description = _core.text_featuriser()
    differences = _batch.drop_empty_columns(_batch.difference_matrix(pairs, featurise, dimension))
    cross_validation = _batch.cross_validate(differences, args.seed, c_grid)

    # Held-out comparison: C is tuned on the train split only, then refit on all of it.
    train_rows, test_rows = _batch.split_indices(len(pairs), args.seed)
    train_cv = _batch.cross_validate(differences[train_rows], args.seed, c_grid)
    weights = _batch.fit_symmetric(differences[train_rows], train_cv.best_c)
    batch_accuracy = _batch.pairwise_accuracy(weights, differences[test_rows])

    held_out: dict[str, Any] = {
        "seed": args.seed, "train_pairs": len(train_rows), "test_pairs": len(test_rows),
        "batch_c": train_cv.best_c, "batch_accuracy": batch_accuracy,
        "online_by_epoch": [], "gap_points": float("nan"), "gap_met": False,
    }
    if _core.core_unavailable_reason() is None:
        curve = _core.online_held_out_curve([pairs[i] for i in train_rows], [pairs[i] for i in test_rows], args.epochs)
        held_out["online_by_epoch"] = curve
        held_out["gap_points"] = 100.0 * (batch_accuracy - curve[-1]["accuracy"])
        held_out["gap_met"] = held_out["gap_points"] <= GAP_TARGET_POINTS
    return {
        "pairs": len(pairs), "features": differences.shape[1], "featuriser": description,
        "folds": _batch.FOLDS, "accuracy_by_c": cross_validation.accuracy_by_c,
        "best_c": cross_validation.best_c, "held_out": held_out,
    }


def build_report(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    report = _report.environment([sys.argv[0], *argv])
    report.update(streams=[], notes=[], batch=None)

    synthetic = _data.synthetic_pairs(args.pairs, args.seed)
    report["streams"].append(measure_stream("synthetic", synthetic.generator, synthetic.pairs, args))
    report["streams"][0]["bayes_accuracy"] = synthetic.bayes_accuracy

    if args.skip_real:
        report["notes"].append("HH-RLHF stream skipped (--skip-real).")
        return report
    path = args.hh_rlhf_path or _data.hh_rlhf_path()
    if not path.is_file():
        report["notes"].append(f"HH-RLHF stream skipped: file not found at {path}; "
                               f"set {_data.HH_RLHF_ENV} or pass --hh-rlhf-path.")
        return report
    real = _data.load_hh_rlhf(path, limit=QUICK_REAL_PAIRS if args.quick else None)
    report["streams"].append(measure_stream("hh-rlhf-harmless-base test", path.name, real, args))
    report["batch"] = batch_reference(real, args)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.profile:
        synthetic = _data.synthetic_pairs(args.pairs, args.seed)
        print(_core.profile_learner(_core.build_examples(synthetic.pairs)))
        return 0

    report = build_report(args, argv)
    for stream in report["streams"]:
        for contender in stream["contenders"]:
            if contender.get("results_differ_between_repeats"):
                report["notes"].append(f"{contender['name']} gave different accuracies between repetitions "
                                       f"on {stream['name']}; the first repetition is reported.")

    if args.format == "json":
        text = json.dumps(report, indent=2, default=str)
    else:
        text = _report.render_markdown(report)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
