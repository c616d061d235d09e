"""Arms of a study (workflow.arms, the config's arms section): the schema, run ids carrying the arm's
name, arms sharing the corpus and tokenizer stages, and a study without arms left as it was."""

import subprocess
import sys

import pytest
import yaml
from helpers import REPO

from workflow.config import DEFAULT_CONFIG, ConfigError, check_config, load_config_files
from workflow.names import artefact_keys

TINY = REPO / "config" / "tiny.yaml"
WIDE = {"train": {"grid": {"shapes": [{"n_layer": 1, "d_model": 30, "n_head": 4}]}}}
OTHER_STDLIB = {"corpus": {"sources": [{"name": "stdlib", "builtin": "stdlib"}]}}
GPT_VS_LSTM = {"baseline": "gpt", "overlays": {"gpt": {}, "lstm": {"train": {"family": "lstm", "lr": 0.003}}}}


def load(tmp_path, arms=None, **sections):
    """config/tiny.yaml with an arms section (and other sections) overlaid, loaded and validated."""
    overlay = {**({"arms": arms} if arms is not None else {}), **sections}
    path = tmp_path / "arms.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return load_config_files([DEFAULT_CONFIG, TINY, path])


def test_every_arm_trains_the_grid_under_its_own_name(tmp_path):
    runs = check_config(load(tmp_path, GPT_VS_LSTM))
    plain = check_config(load(tmp_path))
    assert len(runs) == 2 * len(plain) == 18
    for run_id, spec in plain.items():
        gpt = runs[f"gpt_{run_id}"]
        assert gpt.arm == "gpt" and gpt.model == spec.model and gpt.optim == spec.optim
        lstm = runs[f"lstm_{run_id.replace('L1-d16-h2', 'lstm-L1-d16').replace('L1-d32-h2', 'lstm-L1-d32')}"
                    .replace("L2-d48-h4", "lstm-L2-d48")]  # fmt: skip
        assert lstm.arm == "lstm" and lstm.model.family == "lstm" and lstm.optim.lr == 0.003
        assert lstm.tokens == spec.tokens and lstm.model.d_model == spec.model.d_model
    # The arm is part of what defines a run (its spec text), like its id.
    assert '"arm":"lstm"' in runs["lstm_lstm-L1-d16_D32k_s0"].to_json()


def test_a_study_without_arms_keeps_its_run_ids_and_settings(tmp_path):
    runs = check_config(load(tmp_path))
    assert sorted(runs)[:3] == ["L1-d16-h2_D128k_s0", "L1-d16-h2_D32k_s0", "L1-d16-h2_D64k_s0"]
    for spec in runs.values():
        assert spec.arm is None and '"arm"' not in spec.to_json()


def test_an_arm_may_give_its_own_grid(tmp_path):
    arms = {"baseline": "gpt", "overlays": {"gpt": {}, "small": {"train": {"grid": {"token_budgets": [32000]}}}}}
    runs = check_config(load(tmp_path, arms))
    assert len([r for r in runs if r.startswith("gpt_")]) == 9
    assert sorted(r for r in runs if r.startswith("small_")) == [
        "small_L1-d16-h2_D32k_s0",
        "small_L1-d32-h2_D32k_s0",
        "small_L2-d48-h4_D32k_s0",
    ]


@pytest.mark.parametrize(
    ("overlay", "named"),
    [
        ({"train": {"device": "cuda"}}, "arms.overlays.lstm.train.device: not a setting an arm may change"),
        ({"train": {"seq_len": 64}}, "arms.overlays.lstm.train.seq_len: not a setting an arm may change"),
        ({"dataset": {"validation_fraction": 0.2}}, "arms.overlays.lstm.dataset: an arm may set train, tokenizer"),
        ({"tokenizer": {"vocabsize": 512}}, "arms.overlays.lstm.tokenizer.vocabsize: not a setting"),
    ],
)
def test_an_arm_naming_an_unknown_setting_stops_in_one_line(tmp_path, overlay, named):
    arms = {"baseline": "gpt", "overlays": {"gpt": {}, "lstm": overlay}}
    with pytest.raises(ConfigError) as error:
        load(tmp_path, arms)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_the_config_check_names_an_unknown_arm_setting_in_one_line(tmp_path):
    path = tmp_path / "arms.yaml"
    arms = {"baseline": "gpt", "overlays": {"gpt": {}, "lstm": {"train": {"lrr": 1}}}}
    path.write_text(yaml.safe_dump({"arms": arms}))
    result = subprocess.run(
        [sys.executable, "-m", "workflow.config", "--check", "--configfile", str(TINY), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "arms.overlays.lstm.train.lrr" in result.stderr


@pytest.mark.parametrize(
    ("arms", "sections", "named"),
    [
        ({"baseline": "gtp", "overlays": {"gpt": {}, "lstm": {}}}, {}, "arms.baseline: 'gtp' is not an arm"),
        ({"baseline": "gpt", "overlays": {"gpt": {}, "tune": {}}}, {}, "arms.overlays.tune: an arm's name"),
        ({"baseline": "gpt", "overlays": {"gpt": {}, "a_b": {}}}, {}, "arms.overlays.a_b: an arm's name"),
        ({"baseline": "gpt", "overlays": {"gpt": {}}}, {}, "config error"),  # one arm compares nothing
        (GPT_VS_LSTM, {"train": {"overrides": {"L1-d16-h2_D32k_s0": {"lr": 0.01}}}}, "not a run of any arm"),
        (GPT_VS_LSTM, {"tune": {"enabled": True}}, "tune.enabled: a study with arms cannot be tuned"),
        ({"baseline": "gpt", "overlays": {"gpt": {}, "wide": WIDE}}, {}, "in arm wide at train.grid.shapes[0]"),
        ({"baseline": "gpt", "overlays": {"gpt": {}, "rw": OTHER_STDLIB}}, {}, "'stdlib' differs from arm gpt's"),
    ],
)  # fmt: skip
def test_arms_that_cannot_run_are_refused_naming_the_key(tmp_path, arms, sections, named):
    with pytest.raises(ConfigError) as error:
        check_config(load(tmp_path, arms, **sections))
    assert named in str(error.value), str(error.value)


def test_an_override_names_a_run_of_its_arm(tmp_path):
    runs = check_config(load(tmp_path, GPT_VS_LSTM, train={"overrides": {"lstm_lstm-L1-d16_D32k_s0": {"lr": 0.01}}}))
    assert runs["lstm_lstm-L1-d16_D32k_s0"].optim.lr == 0.01 and runs["lstm_lstm-L1-d16_D64k_s0"].optim.lr == 0.003


def test_arms_with_one_corpus_and_tokenizer_share_those_stages(tmp_path):
    from workflow.arms import arm_configs

    arms = {
        "baseline": "gpt",
        "overlays": {
            "gpt": {},
            "lstm": {"train": {"family": "lstm"}},
            "vocab": {"tokenizer": {"vocab_size": 448}},
            "corpus": {"corpus": {"sources": [{"name": "other", "builtin": "stdlib", "glob": "e*.py"}]}},
        },
    }
    config = load(tmp_path, arms)
    keys = {name: artefact_keys(arm) for name, arm in arm_configs(config).items()}
    plain = artefact_keys(load(tmp_path))
    # An empty overlay is the study itself: its corpus, tokenizer and dataset are the plain study's.
    assert keys["gpt"] == keys["lstm"] == plain
    assert keys["vocab"]["corpus"] == plain["corpus"] and keys["vocab"]["tokenizer"] != plain["tokenizer"]
    assert keys["vocab"]["dataset"] != plain["dataset"]
    assert len({k["corpus"] for k in keys.values()}) == 2 and len({k["tokenizer"] for k in keys.values()}) == 3
