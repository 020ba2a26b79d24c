"""``inrecon pretrain`` and ``tune``: population pre-training and bilevel hyperparameter tuning."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from inrecon.cli.common import (
    LOG,
    add_common,
    add_config,
    check_device,
    check_memory_for,
    check_outputs,
    command,
    load_config_file,
    parse_sets,
    print_json,
    progress_choice,
    set_help,
)
from inrecon.errors import InreconError

__all__ = ["add_parsers"]


def _init_distributed(device_arg: str):
    """Join the torch.distributed group when started by torchrun (WORLD_SIZE > 1); returns the device."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = check_device(device_arg)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    return device, world


def _load_all(paths, slice_, device):
    from inrecon.data.io.load import load_scan

    return [load_scan(p, **({"slice": slice_} if slice_ is not None else {})).to(device) for p in paths]


def _check_scans_memory(args, scans, config: dict, what: str, copies: int = 1) -> None:
    """The memory of ``scans`` held at once plus one method run (the largest scan with ``config``), times
    ``copies`` (local worker processes, each holding its own)."""
    from inrecon.resources import estimate_scan

    sizes = [estimate_scan(s) for s in scans]
    largest, desc = estimate_scan(max(scans, key=lambda s: estimate_scan(s)[0]), config)
    extra = f" ({len(scans)} scans)" if len(scans) > 1 else ""
    extra += f" in {copies} worker processes" if copies > 1 else ""
    check_memory_for(args, copies * (sum(b for b, _ in sizes) + largest), f"{what} on {desc}{extra}")


def cmd_pretrain(args) -> int:
    """Pre-train a population model (DisINR, STRAINER, Meta) from raw measurements.

    No images are needed: every scan keeps its own forward model. All scans must share modality and matrix
    size. Writes a .safetensors model with its config and provenance. Data-parallel with torchrun: `torchrun
    --nproc_per_node 2 -m inrecon.cli pretrain ...` shards the subjects across processes. `inrecon methods NAME
    --pretrain` lists the config keys.
    """
    import torch

    from inrecon.cli.housekeeping import CheckpointFolder, clean_stale_temporaries
    from inrecon.config import config_to_dict
    from inrecon.recon.methods import METHODS

    spec = METHODS.resolve(args.method)
    if spec.pretrain is None:
        raise InreconError(
            f"{args.method} has no pre-training", f"use one of: {', '.join(METHODS.pretrainers())}"
        )
    overrides = {**load_config_file(args.config), **parse_sets(args.set)}
    spec.pretrain.build(None, overrides)  # every key and value checked before any file is read
    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise InreconError(
            f"model output {str(out)!r} should end in .safetensors", "name it e.g. model.safetensors"
        )
    check_outputs([out], inputs=[*args.data, args.config], checkpoint_dir=args.checkpoint_dir)
    device, world = _init_distributed(args.device)
    if world > 1 and not spec.pretrain.distributed:
        raise InreconError(
            f"{args.method} pre-training does not run data-parallel", "start it without torchrun"
        )
    t0 = time.perf_counter()
    scans = _load_all(args.data, args.slice, device)  # every file read and checked before training starts
    cfg = spec.pretrain.build(scans[0].modality, overrides)  # with the scans' modality defaults
    _check_scans_memory(args, scans, config_to_dict(cfg), f"{spec.name} pre-training")
    rank0 = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    ckpt = CheckpointFolder(args.checkpoint_dir, keep=args.keep_checkpoints)
    if rank0:
        clean_stale_temporaries(out.parent)
    spec.pretrain.run(
        scans,
        cfg,
        out,
        names=[str(p) for p in args.data],
        show_progress=progress_choice(args),
        checkpoint_dir=args.checkpoint_dir,
    )
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # every rank has written its last checkpoint before rank 0 removes them
    if rank0:
        LOG.info("wrote %s", out)
        result = {"output": str(out), "method": spec.name, "subjects": len(scans)}
        result.update(ckpt.finish(), seconds=round(time.perf_counter() - t0, 3))
        print_json(result)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def default_log_path(output: str | Path) -> Path:
    """``H.json`` -> ``H.trials.jsonl`` beside it."""
    out = Path(output)
    return out.with_name(f"{out.stem}.trials.jsonl")


_TUNER_FLAGS = (("random", "n_random"), ("guided", "n_guided"), ("workers", "workers"))


def _tune_settings(args):
    """``(method overrides, TunerConfig)`` from ``--set`` (tuner keys, bare or ``tuner.``-prefixed, go to the
    tuner) and the tuning flags."""
    from inrecon.config import build_config
    from inrecon.tuning.run import TunerConfig

    sets = parse_sets(args.set)
    tuner_keys = {f.name for f in dataclasses.fields(TunerConfig)}
    tuner = {k: sets.pop(k) for k in list(sets) if k in tuner_keys or k.startswith("tuner.")}
    tuner = {k.removeprefix("tuner."): v for k, v in tuner.items()}
    tuner.update({key: getattr(args, flag) for flag, key in _TUNER_FLAGS if getattr(args, flag) is not None})
    if args.oracle:
        tuner["oracle"] = True
    for flag, key in (("steps", "optim.steps"), ("patience", "stop.patience"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            sets[key] = getattr(args, flag)
    return sets, build_config(TunerConfig, tuner)


def cmd_tune(args) -> int:
    """Tune a method's hyperparameters on one scan (bilevel, no reference needed).

    Bilevel optimisation (Bilevel-INR paper): split the acquired samples 80/20 at random; for each candidate h
    train the method on the 80 % and score the held-out 20 % (early stopping picks the step); choose h by
    Bayesian optimisation (Gaussian process, UCB; Sobol points then guided ones). ngp tunes lr, wd_enc, wd_mlp,
    delta and per_level_scale with the self-weighted loss; disinr tunes the adaptation's lr and subject-encoder
    weight decay (--model). Writes the tuned settings (with the chosen step count) to OUTPUT; reuse them with
    `inrecon recon --method METHOD --hparams OUTPUT`. Every finished trial is appended to a log; re-running the
    same command resumes from it. --workers N runs N trials at a time (a q-batch of N guided points, one GP
    fit per batch) in N local processes, or with --ray (or RAY_ADDRESS set) as Ray tasks.
    """
    from inrecon.cli.housekeeping import clean_stale_temporaries
    from inrecon.config import config_to_dict
    from inrecon.parallel import RayOptions, import_ray, ray_requested
    from inrecon.recon.api import resolve, tune
    from inrecon.tuning.hparams import save_hparams, scan_protocol

    out = Path(args.output)
    if out.suffix != ".json":
        raise InreconError(
            f"output {str(out)!r} is not a .json file", "write the hyperparameters to e.g. H.json"
        )
    log = Path(args.log) if args.log else default_log_path(out)
    check_outputs([out, log], inputs=[args.input, args.model])
    device = check_device(args.device)
    sets, tuner_cfg = _tune_settings(args)
    ray = None
    if args.ray or (ray_requested(False) and tuner_cfg.workers > 1):  # RAY_ADDRESS set
        import_ray()  # missing Ray fails here, before the scan is read
        ray = RayOptions(args.ray_cpus_per_task, args.ray_gpus_per_task)
        ray.check()
    (scan,) = _load_all([args.input], args.slice, device)
    if tuner_cfg.oracle and scan.target is None:
        raise InreconError(
            f"--oracle scores against the reference, but {args.input} holds no 'target'",
            "use a scan file with a target (e.g. from `inrecon simulate`), or drop --oracle",
        )
    cfg = resolve(args.method, scan).build(scan.modality, sets)  # a bad value fails before the first trial
    copies = 1 if ray is not None else tuner_cfg.workers
    _check_scans_memory(args, [scan], config_to_dict(cfg), f"tuning {args.method}", copies)
    clean_stale_temporaries(out.parent)
    if log.parent != out.parent:
        clean_stale_temporaries(log.parent)
    tuned = tune(
        scan,
        args.method,
        sets,
        tuner_cfg,
        model=args.model,
        log_path=log,
        show_progress=progress_choice(args),
        ray=ray,
    )
    save_hparams(out, tuned.record(), scan_protocol(scan))
    LOG.info("wrote %s", out)
    print_json(
        {
            "output": str(out),
            "log": str(log),
            "score": tuned.score,
            "oracle": tuned.oracle,
            "trials": len(tuned.result.trials),
            "failed": tuned.result.n_failed,
            "seconds": tuned.result.seconds,
            "workers": tuner_cfg.workers,
            "hparams": tuned.hparams,
        }
    )
    return 0


def add_parsers(sub) -> None:
    from inrecon.tuning.run import TunerConfig

    t = TunerConfig()
    s = command(sub, cmd_pretrain)
    s.add_argument("--method", required=True, choices=["disinr", "strainer", "meta"])
    s.add_argument("--data", required=True, nargs="+", help="pre-training scan files")
    s.add_argument("-o", "--output", required=True, help="model file (.safetensors)")
    add_config(s, "the pre-training config")
    s.add_argument("--slice", type=int, help="slice index for multi-slice inputs")
    s.add_argument("--checkpoint-dir", help="checkpoint here and resume after a kill")
    s.add_argument(
        "--keep-checkpoints", action="store_true", help="keep the checkpoint files after a successful run"
    )
    add_common(s)

    s = command(sub, cmd_tune)
    s.add_argument("input", help="scan file (MRI or CT)")
    s.add_argument("-o", "--output", required=True, help="hyperparameter file to write (.json)")
    s.add_argument("--method", default="ngp", help="method to tune: ngp or disinr [%(default)s]")
    s.add_argument("--model", help="pre-trained model (disinr)")
    s.add_argument("--random", type=int, help=f"random (Sobol) initial trials [{t.n_random}]")
    s.add_argument("--guided", type=int, help=f"Bayesian-optimisation trials [{t.n_guided}]")
    s.add_argument("--steps", type=int, help="step limit of one trial [the method's optim.steps]")
    s.add_argument("--patience", type=int, help="stop a trial this many steps after its best [stop.patience]")
    s.add_argument("--seed", type=int, help="seed: split, initial weights, proposals [the method's seed]")
    s.add_argument(
        "--oracle", action="store_true", help="score trials by PSNR against the reference (evaluation)"
    )
    s.add_argument("--log", help="trial log (JSON lines) [OUTPUT's name with .trials.jsonl]")
    s.add_argument(
        "--workers",
        type=int,
        help=f"trials at a time (q-batch proposals), in as many processes [{t.workers}]",
    )
    s.add_argument(
        "--ray", action="store_true", help="run the trials as Ray tasks (also when RAY_ADDRESS is set)"
    )
    s.add_argument(
        "--ray-cpus-per-task", type=float, metavar="N", help="cores (torch threads) of a Ray task [1]"
    )
    s.add_argument("--ray-gpus-per-task", type=float, metavar="N", help="GPUs of a Ray task [0]")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help("the method or the tuner"))
    s.add_argument("--slice", type=int, help="slice index for multi-slice inputs")
    add_common(s)
