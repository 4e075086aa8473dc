import pytest

from tasks.errors import InputError
from tasks.settings import PRESETS, Settings, load_settings


def test_defaults_are_valid_and_flatten_to_section_keys():
    flat = Settings().flat()
    for key in ("data.target", "split.train", "window.input_length", "window.horizon", "window.mode",
                "model.layers", "model.units", "model.bidirectional", "model.dropout", "train.epochs",
                "train.batch_size", "train.learning_rate", "train.patience", "train.seed",
                "tracking.experiment", "registry.model_name"):
        assert key in flat
    assert flat["tracking.experiment"] == "lstm-forecast"
    assert flat["registry.model_name"] == "lstm-forecaster"


def test_seed_preset_reproduces_the_original_script():
    s = load_settings(preset="seed")
    assert (s.window.input_length, s.window.mode) == (96, "seq2seq")
    assert (s.model.layers, s.model.units) == (2, 8)
    assert (s.train.batch_size, s.train.learning_rate, s.train.epochs) == (7, 0.006, 100)
    assert s.split.train == 800
    assert "seed" in PRESETS


def test_yaml_then_set_overrides_change_only_what_they_name(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochs: 7\nmodel:\n  units: 16\n")
    s = load_settings(config, ["train.epochs=3", "data.features=[HUFL, HULL]"])
    assert (s.train.epochs, s.model.units, s.data.features) == (3, 16, ("HUFL", "HULL"))
    assert s.train.batch_size == Settings().train.batch_size


@pytest.mark.parametrize("override, fragment", [
    ("train.epochs=many", "train.epochs"),
    ("train.nonsense=1", "train.nonsense"),
    ("split.train=1.5", "split.train"),
    ("window.mode=seq2seq", "seq2seq"),
    ("split.test=3", "split.test"),
    ("epochs", "section.key=value"),
])
def test_bad_settings_are_input_errors_naming_the_key(override, fragment):
    with pytest.raises(InputError) as err:
        load_settings(overrides=[override])
    assert fragment in str(err.value)


def test_settings_are_frozen():
    with pytest.raises(Exception):
        Settings().train.epochs = 5  # type: ignore[misc]


def test_set_takes_numbers_in_scientific_notation_without_a_dot():
    from tasks.settings import load_settings

    # YAML 1.1 reads "1e-3" as text; a user means the number.
    assert load_settings(None, ["train.learning_rate=1e-3"]).train.learning_rate == 0.001
    assert load_settings(None, ["tracking.experiment=1e5x"]).tracking.experiment == "1e5x"
