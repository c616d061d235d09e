import dataclasses
import json

import pytest
from spec_variants import FIXTURE, all_configs, digest

from workflow.config import expand_runs, spec_json
from workflow.spec import ModelConfig, RunSpec

PINNED = json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_spec_text_is_unchanged(name):
    """Snakemake reruns a run when its spec text changes: every run of the shipped
    configs (and of the tiny.yaml variants) keeps the text the dict-based grid made."""
    runs = expand_runs(all_configs()[name])
    assert sorted(runs) == sorted(PINNED[name])
    changed = [run_id for run_id, spec in runs.items() if digest(spec.to_json()) != PINNED[name][run_id]]
    assert not changed, f"spec text changed for {changed[:3]}: {runs[changed[0]].to_json()}"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_json_round_trip(name):
    for spec in expand_runs(all_configs()[name]).values():
        assert RunSpec.from_json(spec.to_json(), spec.execution_json()) == spec
        assert spec_json(spec) == spec.to_json()


def test_canonical_text():
    spec = next(iter(expand_runs(all_configs()["config/tiny.yaml"]).values()))
    text = spec.to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert json.loads(text)["branch_tokens"] == [32_000] and spec.to_dict()["branch_tokens"] == [32_000]


def test_execution_settings_are_not_in_the_compared_text():
    """Device, logging, checkpoint interval and the like never retrain a run: Snakemake compares only
    the result-defining text; the summary records both parts."""
    spec = next(iter(expand_runs(all_configs()["config/tiny.yaml"]).values()))
    other = dataclasses.replace(
        spec,
        execution=dataclasses.replace(spec.execution, device="cuda", log_every=1, checkpoint_every=7, devices=2),
    )
    assert other.to_json() == spec.to_json() and other.execution_json() != spec.execution_json()
    assert "execution" not in json.loads(spec.to_json()) and "flop_convention" not in json.loads(spec.to_json())
    assert spec.to_dict()["execution"]["log_every"] == spec.execution.log_every


def test_run_spec_is_frozen():
    spec = next(iter(expand_runs(all_configs()["config/tiny.yaml"]).values()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.tokens = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.optim.lr = 1.0


def test_unknown_key_is_refused():
    spec = next(iter(expand_runs(all_configs()["config/tiny.yaml"]).values())).to_dict()
    with pytest.raises(TypeError, match="learning_rate"):
        RunSpec.from_dict({**spec, "learning_rate": 0.1})


def test_model_config_is_data_validated_by_its_family():
    """A ModelConfig checks nothing itself: workflow.families.validate says whether it can be built."""
    from workflow import families

    unknown = ModelConfig(vocab_size=10, seq_len=8, n_layer=1, d_model=8, family="rnn")
    with pytest.raises(ValueError, match="unknown model family 'rnn'; choose one of gpt, lstm"):
        families.validate(unknown)
    with pytest.raises(ValueError, match="n_head=3 does not divide d_model=8"):
        families.validate(ModelConfig(vocab_size=10, seq_len=8, n_layer=1, d_model=8, n_head=3))
    with pytest.raises(ValueError, match="rotary positions need an even head size, got 3"):
        families.validate(ModelConfig(vocab_size=10, seq_len=8, n_layer=1, d_model=9, n_head=3))
    # An LSTM has no heads: n_head is recorded but not checked.
    families.validate(ModelConfig(vocab_size=10, seq_len=8, n_layer=1, d_model=9, n_head=2, family="lstm"))
