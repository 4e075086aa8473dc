"""Sweep spaces: the file format, its checks (each refusal names the key and what is allowed), the grid,
trial names, and the proposers (grid order, Optuna's seeded TPE, trials done before)."""

from pathlib import Path

import pytest

from tasks.errors import InputError
from tasks.runs.space import Proposer, Space, read_space, trial_name, trial_settings
from tasks.settings import Settings

BASE = Settings()


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def _refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as caught:
        read_space(_space(tmp_path, text), BASE)
    return "\n".join(map(str, caught.value.problems))


def test_the_bundled_example_space_is_valid_and_searched_by_optuna():
    space = read_space(Path(__file__).parents[3] / "sweeps" / "example.yaml", BASE)
    assert not space.is_grid and set(space.axes) == {"window.input_length", "model.units", "train.learning_rate"}


def test_lists_only_make_the_full_grid_in_file_order(tmp_path):
    space = read_space(_space(tmp_path, "window.input_length: [48, 96]\nmodel.units: [16, 32, 64]\n"), BASE)
    assert space.is_grid
    grid = space.grid()
    assert len(grid) == 6 and grid[0] == {"window.input_length": 48, "model.units": 16}
    assert grid[-1] == {"window.input_length": 96, "model.units": 64}


@pytest.mark.parametrize("text, expected", [
    ("window.input_lenght: [48]\n", "'window.input_lenght' is not a setting; use one of: window.input_length, "
                                    "window.horizon, window.mode"),
    ("windows.units: [4]\n", "'windows.units' is not a setting; name a setting as section.key; the sections are data, "
                              "evaluate, model, promotion"),
    ("model.dropout: [0.1, 1.5]\n", "model.dropout=1.5 is refused by the settings (model.dropout must be in [0, 1))"),
    ("model.units: {choice: [8, -1]}\n", "model.units=-1 is refused by the settings"),
    ("train.learning_rate: {low: 0.01, high: 0.001}\n", "train.learning_rate: low 0.01 and high 0.001 must be "
                                                         "numbers with low < high"),
    ("train.learning_rate: {low: 0, high: 0.1, log: true}\n", "a log range needs low > 0 (got 0)"),
    ("model.units: 16\n", "model.units: 16 is not a list, {choice: [...]} or {low: ..., high: ...}"),
    ("model.units: []\n", "model.units: no values to try"),
    ("", "holds no settings to vary"),
    ("model.units: [16\n", "cannot be read"),
])
def test_a_bad_space_is_refused_naming_the_key_and_what_is_allowed(tmp_path, text, expected):
    assert expected in _refusal(tmp_path, text)


def test_a_missing_space_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="cannot be read"):
        read_space(tmp_path / "nowhere.yaml", BASE)


def test_trial_settings_change_only_the_varied_keys():
    trial = trial_settings(BASE, {"window.input_length": 168, "train.learning_rate": 0.003})
    assert trial.window.input_length == 168 and trial.train.learning_rate == 0.003
    assert trial.model == BASE.model and trial.window.horizon == BASE.window.horizon


def test_trial_names_show_the_varied_values_shortly():
    assert trial_name({"window.input_length": 168, "model.units": 64, "train.learning_rate": 0.0031234}) == \
        "L168-u64-lr0.00312"
    assert trial_name({"train.patience": 5}) == "patience5"


def test_the_grid_proposer_skips_trials_finished_before():
    space = Space({"model.units": [4, 8, 16]})
    proposer = Proposer(space, seed=1, done=[({"model.units": 8}, 0.5)])
    assert proposer.size == 2
    asked = [proposer.ask() for _ in range(3)]
    assert [a[1] for a in asked[:2]] == [{"model.units": 4}, {"model.units": 16}] and asked[2] is None


def _draws(proposer: Proposer, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        handle, values = proposer.ask()
        proposer.tell(handle, values["train.learning_rate"])  # an objective that prefers small rates
        out.append(values)
    return out


def test_optuna_proposals_repeat_with_the_seed_and_stay_in_the_space():
    space = Space({"train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "model.units": {"choice": [8, 16]},
                   "model.layers": {"low": 1, "high": 3}})
    first, again, other = (_draws(Proposer(space, seed=s), 12) for s in (7, 7, 8))
    assert first == again and first != other
    assert all(1e-4 <= d["train.learning_rate"] <= 1e-2 and d["model.units"] in (8, 16)
               and d["model.layers"] in (1, 2, 3) and isinstance(d["model.layers"], int) for d in first)


def test_optuna_learns_from_trials_done_before():
    space = Space({"train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}})
    done = [({"train.learning_rate": lr}, lr) for lr in (1e-4, 2e-4, 5e-3, 8e-3, 9e-3, 1e-2, 3e-3, 4e-3, 6e-3, 7e-3, 1.5e-4)]
    proposer = Proposer(space, seed=3, done=done)
    assert len(proposer.study.trials) == len(done)
    # TPE, told that small rates win, proposes mostly small ones.
    assert sum(d["train.learning_rate"] < 1e-3 for d in _draws(proposer, 10)) >= 6
