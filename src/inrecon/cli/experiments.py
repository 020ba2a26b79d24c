"""``inrecon demo`` and ``bench``: the main job and the named experiments."""

from __future__ import annotations

from inrecon.cli.common import (
    LOG,
    add_common,
    check_outputs,
    command,
    parse_sets,
    print_json,
    progress_choice,
)
from inrecon.errors import InreconError

__all__ = ["add_parsers"]


def cmd_demo(args) -> int:
    """The main job: phantoms -> pre-train DisINR -> every method on unseen subjects -> report.

    Generate brain (MRI) and chest (CT) phantom populations, simulate their acquisitions, pre-train DisINR from
    the measurements of part of each population, reconstruct unseen subjects with the classical baselines, NGP
    and DisINR (plus IMJENSE, Meta and STRAINER in the full profile), print the table and write an HTML report.
    No data or downloads needed. --quick finishes in a few minutes on 2 CPU cores; the default profile (256x256,
    20 pre-training subjects) is meant for a GPU.
    """
    from inrecon.cli.common import check_device
    from inrecon.experiments.demo import run_demo

    if args.jobs is not None and args.jobs < 1:
        raise InreconError(f"--jobs {args.jobs}", "give --jobs 1 or more")
    check_outputs(folders=[args.output])
    check_device(args.device)
    run_demo(
        quick=args.quick,
        out_dir=args.output,
        device=args.device,
        show_progress=progress_choice(args),
        jobs=args.jobs,
    )
    return 0


def cmd_bench(args) -> int:
    """Named experiments reproducing the papers' tables and figures (JSON, Markdown, HTML report).

    DisINR Tables 1-5 and 7, Figs. 5 and 7; the Bilevel paper's tuned vs default vs oracle, transfer and residual
    series; the quality suite. Each is a typed config in a JSON file; --quick shrinks it for a CPU. Real data
    from INRECON_DATA where present, phantoms otherwise (the report says which). `inrecon bench --list` lists
    them; `inrecon bench all --quick` runs every one.
    """
    import json
    import time

    from inrecon.experiments.bench import available_experiments, load_experiment, run_bench

    if args.list or not args.names:
        for name, desc in available_experiments().items():
            print(f"{name:20s} {desc}")
        return 0
    names = list(available_experiments()) if args.names == ["all"] else args.names
    overrides = {}
    for k, v in parse_sets(args.set).items():
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    for name in names:  # every experiment's config checked before the first one runs
        load_experiment(name, args.quick, overrides)
    check_outputs(folders=[args.output], inputs=[n for n in names if n.endswith(".json")])
    t0 = time.perf_counter()
    reports = [
        str(
            run_bench(
                name,
                quick=args.quick,
                out_dir=args.output,
                show_progress=progress_choice(args),
                log=LOG.info,
                overrides=overrides,
            )
        )
        for name in names
    ]
    print_json({"reports": reports, "seconds": round(time.perf_counter() - t0, 3)})
    return 0


def add_parsers(sub) -> None:
    s = command(sub, cmd_demo)
    s.add_argument("--quick", action="store_true", help="small sizes for a CPU (a few minutes)")
    s.add_argument("-o", "--output", default="inrecon-demo", help="output folder [%(default)s]")
    s.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="reconstructions at once, in local processes (default: one per CPU core, at most 4; 1 on a GPU)",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common(s, memory=False)

    s = command(sub, cmd_bench)
    s.add_argument("names", nargs="*", help="experiment names (or 'all'), or paths to JSON configs")
    s.add_argument("--list", action="store_true", help="list the experiments")
    s.add_argument("--quick", action="store_true", help="the small CPU profile of each experiment")
    s.add_argument("-o", "--output", default="inrecon-bench", help="output folder [%(default)s]")
    s.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override an experiment parameter (JSON values, e.g. n_test=3 or views=[60]); unknown keys are refused",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common(s, device=False, memory=False)
