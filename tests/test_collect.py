from dataclasses import replace

import pytest
from helpers import tiny_spec

from workflow.collect import CollectError, collect
from workflow.evaluate import evaluate_run
from workflow.files import write_json_atomic
from workflow.train.trainer import train_run


@pytest.fixture(scope="module")
def run_dirs(dataset_manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    # Its longer cooldown branch is a point of an IsoFLOP budget.
    wsd = replace(
        tiny_spec(schedule="wsd", tokens=32_000),
        run_id="L1-d32-h2_WSD32k_s0",
        branch_tokens=(16_000, 32_000),
        branch_compute_budgets=(None, 4.0e9),
    )
    for spec in (tiny_spec("L1-d16-h2_D32k_s0"), tiny_spec("L1-d32-h2_D32k_s0"), wsd):
        run_id = spec.run_id
        run_dir = root / run_id
        train_run(spec, dataset_manifest, run_dir, root / "work" / run_id / "weights")
        write_json_atomic(
            run_dir / "eval.json",
            evaluate_run(
                root / "work" / run_id / "weights",
                run_dir / "summary.json",
                dataset_manifest,
                batch_size=16,
                device="cpu",
                threads=1,
            ),
        )
        dirs.append(run_dir)
    return dirs


def test_tables_carry_the_chosen_conventions(run_dirs):
    runs, curves = collect(run_dirs, "kaplan", "non_embedding")
    # One row per point: each cosine run, and each cooldown branch of the WSD run.
    assert sorted(runs["run_id"]) == [
        "L1-d16-h2_D32k_s0",
        "L1-d32-h2_D32k_s0",
        "L1-d32-h2_WSD32k_s0@C4e9",
        "L1-d32-h2_WSD32k_s0@D16k",
    ]
    budgets = dict(zip(runs["run_id"], runs["compute_budget"]))
    assert budgets["L1-d32-h2_WSD32k_s0@C4e9"] == 4.0e9
    assert budgets["L1-d32-h2_WSD32k_s0@D16k"] is None and budgets["L1-d32-h2_D32k_s0"] is None
    assert set(runs["training_run"]) == {d.name for d in run_dirs}
    assert (runs["params"] == runs["params_non_embedding"]).all()
    assert (runs["flops"] == runs["flops_kaplan"]).all()
    assert runs["loss"].is_not_null().all() and (runs["status"] == "completed").all()
    assert set(curves["run_id"]) == set(runs["run_id"]) | set(runs["training_run"])
    total, _ = collect(run_dirs, "chinchilla", "total")
    assert (total["params"] == total["params_total"]).all() and (total["flops"] == total["flops_chinchilla"]).all()


def test_missing_summary_is_named(run_dirs, tmp_path):
    broken = tmp_path / "L9-d9-h1_D1_s0"
    broken.mkdir()
    with pytest.raises(CollectError, match=r"run L9-d9-h1_D1_s0 has no summary.json"):
        collect([*run_dirs, broken], "6N", "total")
