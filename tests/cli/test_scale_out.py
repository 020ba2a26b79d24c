"""Issue 13 item 9: many scans in one ``recon`` (local processes or Ray tasks), resumed after a failure; ``tune
--workers``. Tiny 32x32 scans and fits of a few steps."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from inrecon.cli import main
from inrecon.data.io.images import read_image
from tests.cli.test_reliability import SMALL, sets
from tests.cli.tiny_files import mri_file, one_error_line

FIT = sets(*SMALL, "steps=8", "stop=none")


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    paths = [mri_file(folder / f"s{i}.h5", seed=i) for i in range(3)]
    bad = folder / "bad.h5"
    bad.write_bytes(b"not an HDF5 file\n" * 64)
    return paths, bad


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_many_inputs_in_two_processes_match_one_at_a_time_and_a_corrupt_one_fails_alone(
    scans, tmp_path, capsys
):
    paths, bad = scans
    out = tmp_path / "out"
    inputs = [str(paths[0]), str(bad), str(paths[1])]
    assert main(["recon", "--method", "ngp", *inputs, "-o", str(out), "--jobs", "2", "-q", *FIT]) == 1
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert (res["inputs"], res["done"], res["failed"], res["skipped"]) == (3, 2, 1, 0)
    assert res["backend"] == "processes" and res["jobs"] == 2
    assert [r["input"] for r in res["results"]] == inputs  # in input order, whatever the finishing order
    failed = [r for r in res["results"] if r["status"] == "failed"]
    assert [r["input"] for r in failed] == [str(bad)] and not (out / "bad.h5").exists()
    err_lines = [ln for ln in captured.err.splitlines() if ln.startswith("inrecon: error:")]
    assert len(err_lines) == 1 and str(bad) in err_lines[0] and "failed" in err_lines[0]
    for p in paths[:2]:  # the same seeds give the same images as one scan at a time in this process
        single = tmp_path / f"single_{p.stem}.h5"
        assert main(["recon", "--method", "ngp", str(p), "-o", str(single), "-q", *FIT]) == 0
        assert _json(capsys)["output"] == str(single)
        batch = np.asarray(read_image(out / f"{p.stem}.h5"))
        np.testing.assert_allclose(batch, np.asarray(read_image(single)), rtol=1e-3, atol=1e-4)
        assert json.loads((out / f"{p.stem}.h5.json").read_text())["summary"]["method"] == "ngp"


def test_rerun_skips_finished_outputs_and_redoes_a_deleted_one(scans, tmp_path, capsys):
    paths, _ = scans
    out = tmp_path / "out"
    cmd = ["recon", "--method", "zf", *map(str, paths), "-o", str(out), "--format", "npy", "-q"]
    assert main(cmd) == 0
    assert _json(capsys)["done"] == 3
    files = {p.stem: out / f"{p.stem}.npy" for p in paths}
    mtimes = {k: f.stat().st_mtime_ns for k, f in files.items()}
    files["s1"].unlink()
    (out / "s2.npy.json").unlink()  # an image without its sidecar is not complete: redone
    assert main(cmd) == 0
    res = _json(capsys)
    assert [r["status"] for r in res["results"]] == ["skipped", "done", "done"]
    assert res["results"][0]["summary"]["method"] == "zf"  # a skipped output reports its sidecar's summary
    assert files["s0"].stat().st_mtime_ns == mtimes["s0"]
    assert files["s1"].exists() and (out / "s2.npy.json").exists()
    # another method into the same folder: refused before any work, nothing touched
    assert main(["recon", "--method", "cgsense", *map(str, paths), "-o", str(out), "--format", "npy"]) == 2
    assert "holds a zf reconstruction" in one_error_line(capsys.readouterr().err)
    assert files["s0"].stat().st_mtime_ns == mtimes["s0"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{a}", "{a}", "-o", "{out}"], "would both be written"),
        (["{a}", "{missing}", "-o", "{out}"], "does not exist"),
        (["{a}", "{b}", "-o", "{file}"], "is an existing file"),
        (["{a}", "{b}", "-o", "{folder_of_inputs}", "--format", "h5"], "is the input"),
        (["{a}", "{b}", "-o", "{out}", "--jobs", "0"], "--jobs 0"),
        (["{a}", "{b}", "-o", "{out}", "--ray"], "pip install 'inrecon[ray]'"),
    ],
)
def test_every_input_is_checked_before_any_work(scans, tmp_path, capsys, monkeypatch, args, message):
    paths, _ = scans
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    (tmp_path / "f.h5").write_bytes(b"x")
    names = {
        "a": str(paths[0]),
        "b": str(paths[1]),
        "missing": str(tmp_path / "nope.h5"),
        "out": str(tmp_path / "out"),
        "file": str(tmp_path / "f.h5"),
        "folder_of_inputs": str(paths[0].parent),
    }
    argv = ["recon", "--method", "zf", *[a.format(**names) for a in args]]
    before = sorted(p.name for p in paths[0].parent.iterdir())
    assert main(argv) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in paths[0].parent.iterdir()) == before


def test_one_input_keeps_the_single_scan_form(scans, tmp_path, capsys):
    paths, _ = scans
    out = tmp_path / "one.h5"
    assert main(["recon", "--method", "zf", str(paths[0]), "-o", str(out), "--jobs", "2", "-q"]) == 0
    res = _json(capsys)
    assert res["output"] == str(out) and "results" not in res
    # --format makes even one input the many-input form: -o is a folder
    assert main(["recon", "--method", "zf", str(paths[0]), "-o", str(tmp_path / "d"), "--format", "h5"]) == 0
    assert _json(capsys)["done"] == 1 and (tmp_path / "d" / "s0.h5").is_file()


@pytest.mark.slow  # a local Ray cluster starts in ~5 s and its workers import torch: ~20 s on 2 cores
def test_many_inputs_as_ray_tasks_on_a_local_cluster(scans, tmp_path, capsys):
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'inrecon[ray]'")
    paths, bad = scans
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        argv = ["recon", "--method", "zf", *map(str, [*paths, bad]), "-o", str(tmp_path / "out"), "--ray"]
        assert main([*argv, "-q"]) == 1
        res = _json(capsys)
        tune = ["tune", str(paths[0]), "-o", str(tmp_path / "h.json"), "--random", "2", "--guided", "0"]
        assert main([*tune, "--workers", "2", "--ray", "--steps", "6", "-q", *sets(*SMALL)]) == 0
        assert _json(capsys)["trials"] == 2
    finally:
        ray.shutdown()
    assert res["backend"] == "ray" and (res["done"], res["failed"]) == (3, 1)
    for p in paths:
        single = tmp_path / f"{p.stem}.h5"
        assert main(["recon", "--method", "zf", str(p), "-o", str(single), "-q"]) == 0
        np.testing.assert_allclose(
            np.asarray(read_image(tmp_path / "out" / f"{p.stem}.h5")), np.asarray(read_image(single))
        )


def test_tune_with_two_workers_writes_a_resumable_log(scans, tmp_path, capsys):
    paths, _ = scans
    out, log = tmp_path / "h.json", tmp_path / "h.trials.jsonl"
    cmd = ["tune", str(paths[0]), "-o", str(out), "--random", "2", "--guided", "2", "--workers", "2"]
    cmd += ["--steps", "6", "--patience", "3", "-q", *sets(*SMALL)]
    assert main(cmd) == 0
    res = _json(capsys)
    assert res["trials"] == 4 and res["workers"] == 2
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    trials = [t for t in lines if t["type"] == "trial"]
    assert [t["index"] for t in trials] == [0, 1, 2, 3]
    assert [t["phase"] for t in trials] == ["random", "random", "guided", "guided"]
    assert trials[2]["x"] != trials[3]["x"]  # one q-batch: two different points
    text = log.read_text()
    assert main(cmd) == 0  # everything is in the log: nothing runs again
    again = _json(capsys)
    assert log.read_text() == text and again["hparams"] == res["hparams"] and again["trials"] == 4


def _sleep_then_pid(_context, seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def test_leaving_a_runner_by_an_exception_stops_its_workers_at_once():
    import os
    import time

    from inrecon.parallel import Runner

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), Runner(2) as runner:
        for _, outcome in runner.run(_sleep_then_pid, [0.0, 60.0, 60.0]):
            pid = outcome.value
            raise KeyboardInterrupt  # Ctrl-C while the other worker is 60 s into its call
    assert time.perf_counter() - t0 < 30  # not the 60 s of the running call
    with pytest.raises(ProcessLookupError):  # the worker is gone, not computing on
        os.kill(pid, 0)
    with Runner(2) as runner:  # a normal exit still waits for every result
        assert sorted(o.value is not None for _, o in runner.run(_sleep_then_pid, [0.0, 0.5])) == [True, True]


def _write_pid_then_sleep(_context, path: str) -> None:
    import os
    import time
    from pathlib import Path

    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (in a container nobody may reap it)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_their_parent_is_killed_outright(tmp_path):
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    files = [tmp_path / "a.pid", tmp_path / "b.pid"]
    script = (
        "from inrecon.parallel import Runner\n"
        "from tests.cli.test_scale_out import _write_pid_then_sleep\n"
        "with Runner(2) as runner:\n"
        f"    list(runner.run(_write_pid_then_sleep, {[str(f) for f in files]!r}))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=root, env=env)
    deadline = time.monotonic() + 120
    while not all(f.exists() and f.read_text() for f in files):
        assert time.monotonic() < deadline and parent.poll() is None, "the workers never started"
        time.sleep(0.2)
    pids = [int(f.read_text()) for f in files]
    parent.send_signal(signal.SIGKILL)  # no shutdown reaches the pool
    parent.wait()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "workers outlived their killed parent"


def _train_slowly(_context, job: tuple[str, str]) -> int:
    """A training run of 10000 slow steps checkpointing every 5000 steps into ``job[1]``; ``job[0]`` is written
    once it runs."""
    import time
    from pathlib import Path

    from inrecon.engine.trainer import Callback, Checkpoint, OptimConfig, train
    from tests.engine.tasks import Quadratic

    class Slow(Callback):
        def on_step_end(self, run, step, out):
            if step == 3:
                Path(job[0]).write_text("running")
            time.sleep(0.01)

    run = train(
        Quadratic(), OptimConfig(steps=10000, lr=1e-3), [Slow()], checkpoint=Checkpoint(job[1], "fp", 5000)
    )
    return run.step


def test_an_aborted_runner_lets_a_training_run_in_its_worker_checkpoint_its_step(tmp_path):
    import os
    import signal
    import threading
    import time

    import torch

    from inrecon.parallel import Runner

    started, ck = tmp_path / "started", tmp_path / "run.pt"
    sent = []

    def ctrl_c_once_running():
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in this process while the worker trains

    threading.Thread(target=ctrl_c_once_running, daemon=True).start()
    with pytest.raises(KeyboardInterrupt), Runner(2) as runner:
        list(runner.run(_train_slowly, [(str(started), str(ck))]))  # minutes, unless interrupted
    assert time.monotonic() - sent[0] < 30  # the worker was stopped, not waited for
    state = torch.load(ck, map_location="cpu", weights_only=False)
    assert 3 < state["step"] < 5000  # the interrupt's checkpoint at the running step, not a periodic one
