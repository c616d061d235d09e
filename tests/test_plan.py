"""The plan before submission (workflow.plan): the CLI on every shipped config, its order, columns and
header, the corpus-size and throughput sources, runs that do not fit, flags it refuses, and the Slurm
request of a run. The memory model itself is tests/test_memory.py's."""

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import REPO, tiny_spec
from spec_variants import shipped_configs

from workflow.plan import slurm_request
from workflow.slurm_resources import slurm_time

TINYSTORIES = "config/experiments/tinystories_isoflop_gpu.yaml"


def plan(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workflow.plan", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def table(stdout: str) -> dict[str, dict]:
    """The plan's rows by run id, each cell by its column's name, in the printed order."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    names = lines[start].split("slurm")[0].split()
    names[names.index("FLOPs") - 1 : names.index("FLOPs") + 1] = ["flops"]
    names[names.index("GiB") - 1 : names.index("GiB") + 1] = ["ddp"]
    names[names.index("GiB") - 1 : names.index("GiB") + 1] = ["fsdp"]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = line.split("--time=")[0].split()
        rows[cells[0]] = dict(zip(names, cells))
    return rows


def size(text: str) -> float:
    """5.25M -> 5.25e6, as the plan prints sizes and tokens."""
    scale = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    return float(text[:-1]) * scale[text[-1]] if text[-1] in scale else float(text)


def study(*files) -> dict:
    """A config as the plan loads it, with its runs."""
    from workflow.config import check_config, load_config_files
    from workflow.tune import sweep_runs

    config = load_config_files([REPO / "config" / "config.yaml", *(REPO / f for f in files)])
    runs = check_config(config)
    return config, runs | sweep_runs(config, runs)


def overlay(tmp_path: Path, text: str) -> str:
    path = tmp_path / "overlay.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("config", sorted(shipped_configs()))
def test_plan_runs_on_every_shipped_config(config):
    args = [] if config == "config/config.yaml" else ["--configfile", config]
    start = time.perf_counter()
    result = plan(*args)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert elapsed < 10
    lines = result.stdout.splitlines()
    assert lines[0].startswith("plan of ") and lines[-1].startswith("total: ")
    assert any(line.split()[:4] == ["run", "budget", "N", "tokens"] for line in lines)
    if "tinystories" in config:
        # 49 grid runs and 30 sweep runs, each with its memory, hours and Slurm request.
        assert "total: 79 runs" in lines[-1] and sum("--gpus=1" in line for line in lines) == 79


def test_rows_are_ordered_by_budget_then_size_not_as_text():
    result = plan("--configfile", TINYSTORIES)
    assert result.returncode == 0, result.stderr
    rows = list(table(result.stdout).values())
    iso = [r for r in rows if r["budget"] != "-"]
    budgets = [float(r["budget"]) for r in iso]
    assert budgets == sorted(budgets) and budgets[0] == 1e17 and budgets[-1] == 1e19
    for budget in set(budgets):
        sizes = [size(r["N"]) for r in iso if float(r["budget"]) == budget]
        assert sizes == sorted(sizes) and len(sizes) == 9
    # As text, L10 came before L4 and C1e19 before C3e17.
    assert rows[0]["run"] == "L4-d256-h4_C1e17_s0" and rows[8]["run"] == "L24-d1536-h16_C1e17_s0"
    # Runs without a budget follow: the token grid, then the sweep, each by size.
    rest = [r["run"] for r in rows[len(iso) :]]
    assert rest[:4] == ["L6-d384-h6_D1B_s0", "L6-d384-h6_D4B_s0", "L12-d768-h12_D1B_s0", "L12-d768-h12_D4B_s0"]
    assert all(run.startswith("tune_") for run in rest[4:])


def test_the_header_and_columns_use_the_fits_count_and_flop_convention(tmp_path):
    from workflow.families import parameter_counts

    kaplan = overlay(tmp_path, "fit: {flop_convention: kaplan, parameter_count: non_embedding}\n")
    for files, count, convention in (
        ([TINYSTORIES], "with_head", "6N"),
        ([TINYSTORIES, kaplan], "non_embedding", "kaplan"),
    ):
        result = plan("--configfile", *files)
        assert result.returncode == 0, result.stderr
        header = " ".join(result.stdout.split("\n\nrun")[0].split())
        assert f"fit.parameter_count = {count}" in header and f"fit.flop_convention = {convention}" in header
        assert f"{convention} FLOPs" in result.stdout.splitlines()[result.stdout.splitlines().index("") + 1]
        row = table(result.stdout)["L10-d640-h10_C1e17_s0"]
        _, runs = study(*files)
        counts = parameter_counts(runs["L10-d640-h10_C1e17_s0"].model)
        n = counts.non_embedding + (counts.head if count == "with_head" else 0)
        assert size(row["N"]) == pytest.approx(n, rel=5e-3)
        if convention == "6N":
            # The budgets are 6N: a C1e17 run's FLOPs are its budget (to the tokens' rounding).
            assert float(row["flops"]) == pytest.approx(1e17, rel=1e-2)
        assert "total:" in result.stdout and f"FLOPs ({convention};" in result.stdout.splitlines()[-1]


def test_tokens_per_parameter_and_epochs_from_the_dataset_manifest(tmp_path):
    from workflow.names import artefact_keys

    work = overlay(tmp_path, f"work_dir: {tmp_path}\n")
    config, runs = study(TINYSTORIES, work)
    manifest = tmp_path / "dataset" / artefact_keys(config)["dataset"] / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"splits": {"train": {"tokens": 2_000_000_000}}}))
    result = plan("--configfile", TINYSTORIES, work)
    assert "measured" in result.stdout.split("\n\n")[0] and str(manifest) in result.stdout.replace("\n    ", "")
    rows = table(result.stdout)
    for run_id in ("L4-d256-h4_C1e17_s0", "L24-d1536-h16_C1e19_s0", "L12-d768-h12_D4B_s0"):
        spec, row = runs[run_id], rows[run_id]
        assert size(row["tokens"]) == pytest.approx(spec.tokens, rel=5e-3)
        assert float(row["D/N"]) == pytest.approx(spec.tokens / size(row["N"]), rel=1e-2)
        assert float(row["epochs"]) == pytest.approx(spec.tokens / 2e9, rel=5e-3)


def test_epochs_are_estimated_from_the_lock_files_bytes_or_unknown_and_said_once(tmp_path):
    unknown = plan("--configfile", TINYSTORIES)
    assert {row["epochs"] for row in table(unknown.stdout).values()} == {"?"}
    assert unknown.stdout.count("corpus size unknown") == 1 and "--corpus-tokens" in unknown.stdout

    config, runs = study(TINYSTORIES)
    url = config["corpus"]["sources"][0]["url"]
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps({url: {"sha256": "0" * 64, "size": 2_200_000_000}}))
    work = overlay(tmp_path, f"work_dir: {tmp_path}\ncorpus: {{lock_file: {lock}}}\n")
    result = plan("--configfile", TINYSTORIES, work)
    assert result.returncode == 0, result.stderr
    header = " ".join(result.stdout.split("\n\n")[0].split())
    assert "estimated" in header and "2.2 GB of text at an assumed 4 bytes per token" in header
    # 2.2 GB at 4 bytes a token, less the validation split (0.5%, at most 4194304 tokens).
    tokens = 2.2e9 / 4 - 2.2e9 / 4 * 0.005
    row = table(result.stdout)["L4-d256-h4_C1e19_s0"]
    assert float(row["epochs"]) == pytest.approx(runs["L4-d256-h4_C1e19_s0"].tokens / tokens, rel=5e-3)


def test_runs_repeating_the_corpus_more_than_max_epochs_warning_are_warned_about(tmp_path):
    # config/tiny.yaml's runs train 32k to 128k tokens; a corpus of 20k tokens and a limit of 3 epochs.
    limit = overlay(tmp_path, "train: {max_epochs_warning: 3, allow_repeated_epochs: true}\n")
    result = plan("--configfile", "config/tiny.yaml", limit, "--corpus-tokens", "20000")
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    over = {run for run, row in rows.items() if float(row["epochs"]) > 3}
    warned = {line.split()[2] for line in result.stderr.splitlines() if "max_epochs_warning = 3" in line}
    assert over and warned == over and len(over) < len(rows)
    assert all(line.startswith("warning: run ") for line in result.stderr.splitlines())
    # The default, 4, from the schema and config/config.yaml; and a run the trainer would refuse.
    default = plan("--configfile", "config/tiny.yaml", "--corpus-tokens", "20000")
    assert "max_epochs_warning = 4" in default.stderr and "allow_repeated_epochs is false" in default.stderr


def test_each_budget_says_whether_its_sizes_bracket_the_published_optimum(tmp_path):
    result = plan("--configfile", TINYSTORIES)
    assert "C=1e19: sizes 5.25M..692M bracket N_opt≈262M (9 runs)" in result.stdout
    assert "Besiroglu et al. 2024" in result.stdout
    # The five smallest shapes (those the sweep tunes, which must stay shapes of the study) at 1e19.
    shapes = "".join(f"      - {shape}\n" for shape in study(TINYSTORIES)[0]["tune"]["shapes"])
    small = overlay(tmp_path, f"train:\n  isoflop:\n    compute_budgets: [1.0e+19]\n    shapes:\n{shapes}")
    result = plan("--configfile", TINYSTORIES, small)
    assert result.returncode == 0, result.stderr
    assert "C=1e19: sizes 5.25M..54.4M do not bracket: all sizes below N_opt≈262M (5 runs)" in result.stdout


def test_a_measured_throughput_table_sets_each_sizes_time(tmp_path):
    measured = tmp_path / "throughput.csv"
    measured.write_text("params,tokens_per_s\n10000000,1000000\n100000000,100000\n")
    result = plan("--configfile", TINYSTORIES, "--throughput", str(measured))
    assert result.returncode == 0, result.stderr
    assert f"measured tokens/s per device from {measured}" in " ".join(result.stdout.split())
    rows = table(result.stdout)
    # Beyond the table, its nearest row; between rows, on log scales (here tokens/s = 1e13 / N).
    assert rows["L4-d256-h4_C1e17_s0"]["tok/s"] == "1M" and rows["L24-d1536-h16_C1e17_s0"]["tok/s"] == "100k"
    middle = rows["L12-d768-h12_C1e17_s0"]
    assert size(middle["tok/s"]) == pytest.approx(1e13 / size(middle["N"]), rel=1e-2)
    # 3.18B tokens at 1M tokens/s: 53 minutes, more than the 16-minute Slurm limit from the cluster's figure.
    assert rows["L4-d256-h4_C1e17_s0"]["h:mm"] == "0:53"
    assert any("L4-d256-h4_C1e17_s0 takes 0:53" in line for line in result.stderr.splitlines())
    assumed = plan("--configfile", TINYSTORIES)
    assert "assumed MFU from cluster.*" in assumed.stdout


def test_an_unknown_flag_is_refused_in_one_line_naming_it():
    result = plan("--configfile", TINYSTORIES, "--devcie-memory-gb", "4")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "python -m workflow.plan: error: unknown flag --devcie-memory-gb (did you mean --device-memory-gb?)"
    ]
    # Snakemake's config flags are read as Snakemake reads them (workflow.cli_args): a second --configfile
    # flag, which Snakemake would drop, is refused; a --config entry is applied.
    twice = plan("--configfile", TINYSTORIES, "--configfile", TINYSTORIES)
    assert twice.returncode == 1 and "give every file after one flag" in twice.stderr
    moved = plan("--configfile", TINYSTORIES, "--config", "work_dir=/elsewhere")
    assert moved.returncode == 0 and "/elsewhere/" in moved.stdout


@pytest.mark.parametrize("value", ["0", "-5", "0.001", "nan"])
def test_a_device_memory_that_is_no_gpus_is_refused_naming_flag_and_value(value):
    result = plan("--configfile", TINYSTORIES, "--device-memory-gb", value)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "--device-memory-gb" in line and f"{value} GiB is not a GPU's memory" in line


def test_a_run_that_cannot_fit_fails_the_plan_naming_it_and_what_fits():
    result = plan("--configfile", TINYSTORIES, "--device-memory-gb", "6")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert errors and all(line.startswith("error: run ") for line in errors)
    assert any("L24-d1536-h16" in line and "micro_batch_size" in line for line in errors)
    assert "6 GiB per GPU" in errors[0]
    # The table is still printed: what each run needs is what the user must see.
    assert result.stdout.splitlines()[-1].startswith("total: ")


def test_a_cpu_study_is_checked_against_the_host_memory_it_asks_for(tmp_path):
    config = tmp_path / "small_host.yaml"
    config.write_text("train: {device: cpu}\nresources: {train: {mem_mb: 1}}\n")
    result = plan("--configfile", str(config))
    assert result.returncode == 1
    assert "more than resources.train.mem_mb = 1 MB" in result.stderr


def test_slurm_request_of_a_multi_node_run_asks_for_a_task_and_the_gpus_of_each_node():
    spec = tiny_spec()
    cluster = {"train_flops_per_s": 1e12, "runtime_factor": 2, "min_runtime_minutes": 10}
    gpu = replace(spec, execution=replace(spec.execution, device="cuda", devices=4, nodes=2))
    assert "--nodes=2 --ntasks=2 --gres=gpu:4 --cpus-per-task=" in slurm_request(gpu, cluster, 1000)
    assert "--gpus=4 " in slurm_request(replace(gpu, execution=replace(gpu.execution, nodes=1)), cluster, 1000)


def test_slurm_times_carry_their_unit():
    assert "--time=0:10:00 " in slurm_request(
        tiny_spec(), {"train_flops_per_s": 1e12, "runtime_factor": 2, "min_runtime_minutes": 10}, 1
    )
    assert [slurm_time(m) for m in (10, 86, 1556, 1440)] == ["0:10:00", "1:26:00", "1-01:56:00", "1-00:00:00"]
