"""The `o2o` command line: datasets, sweeps, reports, and the quickstart.

Every refusal is one line on stderr, `o2o: error: …`, with exit status 2, before any Ray
resource is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

QUICKSTART_SPEC = Path(__file__).resolve().parents[2] / "tune_specs" / "quickstart.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `o2o` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    from o2o.platform.data import DatasetError
    from o2o.platform.factory import FactoryError
    from o2o.platform.spec import SpecError
    from o2o.platform.sweep import ClusterError

    try:
        return args.func(args)
    except (SpecError, DatasetError, FactoryError, ClusterError, FileNotFoundError) as exc:
        print(f"o2o: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="o2o", description="Offline-to-online RL experiments on Ray.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    datasets = sub.add_parser("datasets", help="make, list and inspect datasets").add_subparsers(required=True, metavar="ACTION")
    make = datasets.add_parser("make", help="make a factory dataset, e.g. hopper-medium")
    make.add_argument(
        "name",
        help="<task>-<level>[-<transitions>]: task hopper|halfcheetah|walker2d, level "
        "random|medium|medium-replay|medium-expert|expert, transitions e.g. 200k (default: D4RL's size)",
    )
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--size", type=int, default=None, help="transitions (default: D4RL's size for the level)")
    make.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    make.set_defaults(func=_datasets_make)
    lst = datasets.add_parser("list", help="local datasets o2o can read")
    lst.set_defaults(func=_datasets_list)
    info = datasets.add_parser("info", help="size, returns and normalized score of a dataset")
    info.add_argument("dataset", help="an o2o name, a Minari id, a D4RL .hdf5 file or a Parquet path")
    info.set_defaults(func=_datasets_info)
    train = datasets.add_parser("train-policies", help="train the behaviour policies a task's datasets come from")
    train.add_argument("task")
    train.add_argument("--env-steps", type=int, default=100_000)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_datasets_train)

    sweep = sub.add_parser("sweep", help="run a tune spec on Ray Tune")
    sweep.add_argument("spec", help="path to a tune spec (YAML)")
    sweep.add_argument("--resume", action="store_true", help="continue a sweep whose driver stopped")
    sweep.add_argument("--storage", default=None, help="Tune storage path, replacing the spec's `storage` (a cluster's shared volume)")
    sweep.add_argument("--tracking-uri", default=None, help="MLflow URI, replacing the spec's `tracking.uri` (e.g. the MLflow server)")
    _verbose_flag(sweep)
    sweep.set_defaults(func=_sweep)

    report = sub.add_parser("report", help="score table and learning curves of a sweep or experiment")
    report.add_argument("target", help="a tune spec (YAML) or an MLflow experiment name")
    report.add_argument("--tracking-uri", default=None, help="MLflow URI (default: the spec's, or sqlite:///runs/mlflow.db)")
    report.add_argument("--storage", default=None, help="with a spec: its storage path, as given to `o2o sweep --storage`")
    report.add_argument("--out", default=None, help="output directory (default: <storage>/<name>/report)")
    report.set_defaults(func=_report)

    quick = sub.add_parser("quickstart", help="make the quickstart's dataset if missing, run IQL offline → online, report")
    quick.add_argument("--spec", default=str(QUICKSTART_SPEC))
    _verbose_flag(quick)
    quick.set_defaults(func=_quickstart)
    return parser


def _verbose_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "-v", "--verbose", type=int, choices=(0, 1, 2), default=1,
        help="0: the summary at the end only; 1: a line per trial event — phase, updates, env steps, "
        "score, rates (default); 2: also Tune's own output and the trials' log lines",
    )


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback `update(done, total)` whose tqdm bar is drawn at the first reported
    step, so that a refusal before any work (an unknown name, a dataset that already exists)
    stays the one `o2o: error:` line on stderr."""
    from tqdm import tqdm

    bars: list[tqdm] = []

    def update(done: int, total: int) -> None:
        if not bars:
            # A terminal redraws in place; a log (a job's, CI's) gets a line every 30 s instead of 10 a second.
            interval = 0.1 if sys.stderr.isatty() else 30.0
            bars.append(tqdm(desc=description, total=total, unit="step", unit_scale=True, mininterval=interval))
        bars[0].total = total
        bars[0].update(done - bars[0].n)  # tqdm redraws at most every `mininterval`

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()


def _datasets_make(args: argparse.Namespace) -> int:
    from o2o.platform.factory import make_dataset

    with _progress(f"making {args.name}") as update:
        resolved = make_dataset(args.name, seed=args.seed, size=args.size, progress=update, overwrite=args.overwrite)
    print(f"{args.name}: {resolved.num_transitions} transitions, hash {resolved.content_hash}, {resolved.parquet_path}")
    return 0


def _datasets_list(args: argparse.Namespace) -> int:
    import minari

    local = sorted(minari.list_local_datasets())
    if not local:
        print("no local datasets; make one with `o2o datasets make hopper-medium`")
    for dataset_id in local:
        print(dataset_id)
    return 0


def _datasets_info(args: argparse.Namespace) -> int:
    import numpy as np

    from o2o.platform.data import normalized_score, read_parquet, resolve_dataset

    resolved = resolve_dataset(args.dataset)
    data = read_parquet(resolved.parquet_path)
    returns = data.episode_returns()
    info = {
        "dataset": resolved.dataset_id,
        "env": resolved.env_id,
        "transitions": resolved.num_transitions,
        "episodes": int(len(returns)),
        "obs_dim": resolved.obs_dim,
        "act_dim": resolved.act_dim,
        "return_mean": round(float(np.mean(returns)), 2),
        "return_max": round(float(np.max(returns)), 2),
        "content_hash": resolved.content_hash,
        "parquet": str(resolved.parquet_path),
    }
    if resolved.env_id:
        try:
            info["normalized_score_mean"] = round(float(normalized_score(resolved.env_id, np.mean(returns))), 2)
        except ValueError:
            pass
    print(json.dumps(info, indent=2))
    return 0


def _datasets_train(args: argparse.Namespace) -> int:
    from o2o.platform.factory import train_policies

    manifest = train_policies(args.task, args.env_steps, seed=args.seed)
    print(f"{args.task}: medium {manifest['medium']} (return {manifest['medium_return']:.0f}), expert {manifest['expert']}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from o2o.platform.sweep import run_sweep

    result = run_sweep(
        args.spec, resume=args.resume, verbose=args.verbose, storage=args.storage, tracking_uri=args.tracking_uri
    )
    return _print_sweep(result)


def _print_sweep(result) -> int:  # noqa: ANN001 - SweepResult
    """The sweep's summary: a trial is finished only when it ran its whole budget; one the driver
    stopped early (Ctrl-C) is said to be stopped, with how to continue it. 0 if all finished."""
    failed = [t for t in result.trials if t["error"]]
    stopped = [t for t in result.trials if not t["error"] and not t["done"]]
    finished = len(result.trials) - len(failed) - len(stopped)
    tail = f"; {len(stopped)} stopped before their budget: `o2o sweep <spec> --resume` continues them" if stopped else ""
    # One line per seed: a trial of K seeds (`seeds_per_trial`) counts as its K seeds.
    unit = "seeds" if any(t.get("lane") for t in result.trials) else "trials"
    print(f"\nsweep {result.name}: {finished}/{len(result.trials)} {unit} finished{tail}")
    print(f"  Tune results:  {result.storage}")
    print(f"  MLflow:        {result.tracking_uri}  (experiment '{result.experiment}'; `mlflow ui --backend-store-uri {result.tracking_uri}`)")
    for t in result.trials:
        score = "n/a" if t["final_score"] is None else f"{t['final_score']:.1f}"
        if t["error"]:
            status = f"FAILED: {t['error']}"
        elif not t["done"]:
            status = f"STOPPED before its budget (last eval/normalized_score {score})"
        else:
            status = f"eval/normalized_score {score}"
        run = f"run {t['run_id']}" if t["run_id"] else "no MLflow run"
        print(f"  {t['dataset']} seed {t['seed']}: {run}  {status}")
    return 1 if failed or stopped else 0


def _report(args: argparse.Namespace) -> int:
    from o2o.platform.report import build_report, format_table
    from o2o.platform.tracking import check_server

    if args.target.endswith((".yaml", ".yml")):
        from o2o.platform.sweep import load

        spec = load(args.target, storage=args.storage, tracking_uri=args.tracking_uri)
        uri = spec.tracking_uri()
        experiment, sweep = spec.experiment_name, spec.name
        out = Path(args.out) if args.out else Path(spec.storage_path()) / spec.name / "report"
    else:
        from o2o.platform.spec import SpecError, refuse_credentials

        try:
            uri = refuse_credentials(args.tracking_uri or f"sqlite:///{Path(args.storage or 'runs').resolve() / 'mlflow.db'}")
        except ValueError as exc:
            raise SpecError(f"--tracking-uri: {exc}") from None
        experiment, sweep = args.target, None
        out = Path(args.out or Path(args.storage or "runs") / args.target / "report")
    try:
        check_server(uri)  # a server that does not answer is refused in seconds, not minutes
    except ValueError as exc:
        print(f"o2o: error: MLflow at {uri} cannot be read: {exc}", file=sys.stderr)
        return 2
    try:
        report = build_report(uri, experiment, out, sweep=sweep)
    except ValueError as exc:
        # A directory given for a spec reads as an experiment name; say what it is.
        hint = f"; {args.target} is a directory: give a spec file (YAML) or an experiment name" if sweep is None and Path(args.target).is_dir() else ""
        print(f"o2o: error: {exc}{hint}", file=sys.stderr)
        return 2
    print(format_table(report))
    print(f"\ntable: {report.table_path}")
    for path in report.curve_paths:
        print(f"curve: {path}")
    for figure in report.histograms:
        print(f"distribution: {figure.path}")
    print(f"html: {report.html_path}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from o2o.algorithms import hyperparameters
    from o2o.platform.factory import FactoryError, make_dataset, split_name
    from o2o.platform.spec import load_spec
    from o2o.platform.sweep import run_sweep

    for dataset in load_spec(args.spec, hyperparameters()).datasets:
        try:
            split_name(dataset)
        except FactoryError:
            continue  # not a factory dataset: the sweep finds it, or says where it looked
        with _progress(f"making {dataset} (first run only)") as update:
            make_dataset(dataset, progress=update)
    name = f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_sweep(args.spec, name=name, verbose=args.verbose)
    code = _print_sweep(result)
    if code == 0:
        from o2o.platform.report import build_report, format_table

        report = build_report(result.tracking_uri, result.experiment, result.storage / "report", sweep=result.name)
        print(format_table(report))
        print(f"\nlearning curves: {', '.join(str(p) for p in report.curve_paths)}")
        print(f"report page: {report.html_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
