"""The generic Bayesian-optimisation tuner: search quality, resumable log, non-finite scores."""

from __future__ import annotations

import json
import math

import pytest

from inrecon.errors import InreconError
from inrecon.tuning.bo import Param, SearchSpace, TuneResult, read_log, tune

OPT = {"a": 0.31, "b": -0.42, "c": 1e-3}


def _space() -> SearchSpace:
    return SearchSpace((Param("a", 0.0, 1.0), Param("b", -1.0, 1.0), Param("c", -5.0, -1.0, log=True)))


def quad(h: dict) -> tuple[float, dict]:
    """A shifted quadratic with its minimum 0 at OPT (``c`` in log10 units)."""
    v = (
        (h["a"] - OPT["a"]) ** 2
        + (0.5 * (h["b"] - OPT["b"])) ** 2
        + (0.25 * (math.log10(h["c"]) - math.log10(OPT["c"]))) ** 2
    )
    return v, {"value": v, "history": [1, 2, 3]}


def test_space_unit_round_trip_and_json():
    s = _space()
    h = {"a": 0.25, "b": 0.5, "c": 1e-3}
    u = s.to_unit(h)
    assert u == pytest.approx([0.25, 0.75, 0.5])
    back = s.from_unit(u)
    assert back["c"] == pytest.approx(1e-3) and back["b"] == pytest.approx(0.5)
    assert SearchSpace.from_json(s.to_json()) == s
    with pytest.raises(InreconError, match="low < high"):
        SearchSpace((Param("x", 1.0, 1.0),))
    with pytest.raises(InreconError, match="duplicate"):
        SearchSpace((Param("x", 0, 1), Param("x", 0, 2)))


def test_bo_beats_random_and_finds_optimum(tmp_path):
    res = tune(quad, _space(), n_random=6, n_guided=14, seed=3, log_path=tmp_path / "t.jsonl")
    assert isinstance(res, TuneResult) and len(res.trials) == 20
    rand = [t["score"] for t in res.trials if t["phase"] == "random"]
    guided = [t["score"] for t in res.trials if t["phase"] == "guided"]
    assert len(rand) == 6 and len(guided) == 14
    assert min(guided) < 0.5 * min(rand)
    assert res.best_score < 5e-3
    assert abs(res.best_h["a"] - OPT["a"]) < 0.08 and abs(res.best_h["b"] - OPT["b"]) < 0.2
    # scalar info is logged, lists are not
    assert "value" in res.trials[0]["info"] and "history" not in res.trials[0]["info"]
    d = json.loads(res.to_json())
    assert d["best_index"] == res.best_index and len(d["trials"]) == 20


def test_resume_reuses_finished_trials_and_is_deterministic(tmp_path):
    full = tune(quad, _space(), n_random=4, n_guided=4, seed=1, log_path=tmp_path / "full.jsonl")

    # an "interrupted" run: the first 5 trials, then a torn line from a kill mid-write
    log = tmp_path / "part.jsonl"
    lines = (tmp_path / "full.jsonl").read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:6]) + lines[6][:25])
    calls = []

    def counting(h):
        calls.append(h)
        return quad(h)

    resumed = tune(counting, _space(), n_random=4, n_guided=4, seed=1, log_path=log)
    assert len(calls) == 3  # only the 3 unfinished trials ran
    assert [t["x"] for t in resumed.trials] == [t["x"] for t in full.trials]
    assert [t["score"] for t in resumed.trials] == [t["score"] for t in full.trials]
    header, trials = read_log(log)
    assert header["type"] == "header" and len(trials) == 8
    # the budget is not fingerprinted: extending a finished run adds guided trials only
    more = tune(counting, _space(), n_random=4, n_guided=6, seed=1, log_path=log)
    assert len(calls) == 5 and len(more.trials) == 10


def test_mismatched_log_refused(tmp_path):
    log = tmp_path / "t.jsonl"
    tune(quad, _space(), n_random=2, n_guided=0, seed=0, log_path=log, objective_id={"scan": "A"})
    with pytest.raises(InreconError, match="another tuning run"):
        tune(quad, _space(), n_random=2, n_guided=0, seed=0, log_path=log, objective_id={"scan": "B"})
    other = SearchSpace((Param("a", 0.0, 2.0), Param("b", -1.0, 1.0), Param("c", -5.0, -1.0, log=True)))
    with pytest.raises(InreconError, match="another tuning run"):
        tune(quad, other, n_random=2, n_guided=0, seed=0, log_path=log, objective_id={"scan": "A"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "trial"}\n')
    with pytest.raises(InreconError, match="not an inrecon trial log"):
        tune(quad, _space(), n_random=1, n_guided=0, log_path=bad)


def test_non_finite_scores_do_not_break_the_gp(tmp_path):
    def sometimes_diverges(h):
        if h["a"] > 0.6:  # "lr too high": the fit blew up
            return math.nan, {"diverged": True}
        if h["a"] < 0.05:
            return math.inf, {}
        return quad(h)

    res = tune(sometimes_diverges, _space(), n_random=6, n_guided=6, seed=0, log_path=tmp_path / "t.jsonl")
    assert res.n_failed >= 1
    failed = [t for t in res.trials if not t["finite"]]
    assert all(t["score"] is None and t["score_text"] in ("nan", "inf") for t in failed)
    assert res.best_h is not None and math.isfinite(res.best_score)
    assert res.best_h["a"] <= 0.6
    for line in (tmp_path / "t.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_all_failed_and_bad_budget():
    res = tune(lambda h: (math.nan, {}), _space(), n_random=2, n_guided=2, seed=0)
    assert res.best_h is None and math.isnan(res.best_score) and res.n_failed == 4
    assert all(t["phase"] == "random" for t in res.trials)  # no GP without finite scores
    with pytest.raises(InreconError, match="budget"):
        tune(quad, _space(), n_random=0, n_guided=0)
    with pytest.raises(InreconError, match="kappa"):
        tune(quad, _space(), kappa=-1.0)


def test_maximize_and_table(capsys, monkeypatch):
    monkeypatch.setenv("INRECON_PROGRESS", "lines")  # CI silences progress with INRECON_PROGRESS=0
    res = tune(
        lambda h: (-quad(h)[0], {}), _space(), n_random=3, n_guided=2, minimize=False, show_progress=True
    )
    assert res.best_score == max(t["score"] for t in res.trials)
    err = capsys.readouterr().err
    assert "guided" in err and "tuning done" in err


# --- parallel trials (issue 13 item 9) ------------------------------------------------------------------------
def test_one_worker_is_the_sequential_loop(tmp_path):
    a = tune(quad, _space(), n_random=3, n_guided=3, seed=2)
    b = tune(quad, _space(), n_random=3, n_guided=3, seed=2, workers=1, log_path=tmp_path / "t.jsonl")
    assert [t["x"] for t in a.trials] == [t["x"] for t in b.trials]
    assert [t["score"] for t in a.trials] == [t["score"] for t in b.trials]


def test_q_batches_propose_distinct_points_and_still_find_the_optimum(tmp_path):
    res = tune(quad, _space(), n_random=6, n_guided=15, seed=3, workers=3, log_path=tmp_path / "t.jsonl")
    assert len(res.trials) == 21 and [t["index"] for t in res.trials] == list(range(21))
    assert [t["phase"] for t in res.trials] == ["random"] * 6 + ["guided"] * 15
    # the random phase is the same Sobol sequence as with one worker
    seq = tune(quad, _space(), n_random=6, n_guided=0, seed=3)
    assert [t["x"] for t in res.trials[:6]] == [t["x"] for t in seq.trials]
    for start in range(6, 21, 3):  # one batch: one GP fit, three different points
        xs = [tuple(t["x"]) for t in res.trials[start : start + 3]]
        assert len(set(xs)) == 3
        assert len({tuple(t["gp_warnings"]) for t in res.trials[start : start + 3]}) == 1
    assert res.best_score < 5e-3


def test_a_batch_interrupted_half_way_reruns_only_its_unlogged_trials(tmp_path):
    full = tune(quad, _space(), n_random=4, n_guided=4, seed=1, workers=2, log_path=tmp_path / "full.jsonl")
    log = tmp_path / "part.jsonl"
    lines = (tmp_path / "full.jsonl").read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:8]))  # header + trials 0-6: trial 7 of the batch (6, 7) is missing
    calls = []

    def counting(h):
        calls.append(h)
        return quad(h)

    resumed = tune(counting, _space(), n_random=4, n_guided=4, seed=1, workers=2, log_path=log)
    assert len(calls) == 1  # the batch is proposed again from trials 0-5 (the same points); only 7 runs
    assert [t["x"] for t in resumed.trials] == [t["x"] for t in full.trials]
    assert [t["index"] for t in read_log(log)[1]] == list(range(8))


def test_a_trial_failing_in_a_worker_stops_the_run_after_logging_the_trials_before_it(tmp_path):
    from inrecon.parallel import Runner

    def objective(h):
        if h["a"] > 0.8:
            raise RuntimeError("boom")
        return quad(h)

    log = tmp_path / "t.jsonl"
    with Runner(1, make_context=lambda: objective) as runner:  # a runner's outcomes, in this process
        with pytest.raises(InreconError, match=r"tuning trial \d+ failed: RuntimeError: boom"):
            tune(None, _space(), n_random=8, n_guided=0, seed=0, workers=4, log_path=log, runner=runner)
    done = read_log(log)[1]
    assert done and all(t["h"]["a"] <= 0.8 for t in done)
    assert [t["index"] for t in done] == list(range(len(done)))
