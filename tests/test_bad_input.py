"""The bad-input catalogue through the real command line.

Every malformed workbook ends in exit code 2 and one message per problem that says what is wrong, where
(file, sheet, column, Excel rows) and what to do, with no traceback; hostile files are refused quickly
and with bounded memory; the options that handle a case instead say what they changed; and a training
refused for bad input leaves a FAILED run with its validation report, no model version, the champion
where it was and the workbook untouched. README.md ("Bad input") lists the same cases and messages.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

CLI = Path(sys.executable).parent / "lstm-pipeline"
FIXTURES = Path(__file__).parent / "fixtures"

# case -> fragments of its message(s) on stderr
REFUSED = {
    "csv_renamed": ["not an Excel workbook (text; an .xlsx file is a zip archive); if it is CSV, rename it to .csv"],
    "empty_file": ["the file is empty (0 bytes); export the data again"],
    "truncated": ["the workbook is damaged or incomplete", "copy or export the file again"],
    "directory": ["is a folder, not a file; pass a workbook (.csv, .parquet, .xls, .xlsm, .xlsx)"],
    "header_only": ["sheet 'data' has no data rows below the header (Excel row 1)"],
    "too_short": ["sheet 'data': only 30 data rows; the split and window settings need at least",
                  "use more data, or lower window.input_length"],
    "missing_column": ["sheet 'data': column 'OT' not found; columns present: date, HUFL, HULL, MUFL, MULL, LUFL, "
                       "LULL, oil temp; check the spelling"],
    "text_in_numeric": ["sheet 'data', column 'OT': 3 cells hold text, not numbers: 'n/a' (Excel row 12), "
                        "'12,5' (Excel row 13), '--' (Excel row 202); write numbers with a decimal point"],
    "blank_run": ["sheet 'data', column 'OT': 12 blank cells at Excel rows 102-113; fill in the blanks, "
                  "or pass --set data.fill_gaps=12"],
    "infinity": ["column 'OT': 2 infinite values: inf (line 52), -inf (line 53); replace them with real numbers"],
    "error_cells": ["column 'OT': 2 cells hold Excel errors: '#DIV/0!' (Excel row 62), '#N/A' (Excel row 63); "
                    "fix the formulas"],
    "duplicate_timestamps": ["column 'date': 3 rows share 1 timestamp: 2016-07-13 11:00:00 at Excel rows 301-303; "
                             "remove the duplicate rows"],
    "unsorted": ["column 'date': timestamps go backwards at Excel rows 403-411 (the rows are not in time order); "
                 "sort the rows by time, or pass --set data.sort=true"],
    "unparseable_timestamps": ["column 'date': 2 cells are not dates or times: '2016-13-45 00:00' (Excel row 7), "
                               "'yesterday' (Excel row 8); correct those cells"],
    "irregular_spacing": ["column 'date': uneven spacing at Excel rows 202, 207 (the step is 1 hour elsewhere); "
                          "make the timestamps evenly spaced"],
    "gaps": ["column 'date': 5 missing timestamps in 1 gap (the step is 1 hour): 5 after 2016-07-21 19:00:00 "
             "(before Excel row 502); add the missing rows, or pass --set data.fill_gaps=5"],
    "constant_target": ["column 'OT': the target is constant (the same value on every row, zero variance)"],
    "formulas_no_cache": ["column 'OT': 720 formula cells have no saved values (Excel rows 2-721",
                          "open the file in Excel and save it"],
    "data_on_second_sheet": ["the data is on sheet 'load', not on sheet 'notes'; pass --sheet load"],
    "title_rows": ["sheet 'data': the header is on Excel row 3, not Excel row 1 (the rows above it hold a title); "
                   "pass --header-row 3"],
    "entity_bomb": ["refused: the workbook declares XML entities (in xl/worksheets/sheet1.xml)"],
    "decompression_bomb": ["refused: its parts inflate to 2.0 GiB (limit 1 GiB), which is what a decompression "
                           "bomb does"],
    "lying_sizes": ["refused: a part of the workbook inflates past the size its zip headers declare"],
}
# case, options, what the summary must say: the options that handle a case rather than refuse it
HANDLED = [
    ("data_on_second_sheet", ["--sheet", "load"], "[sheet load]"),
    ("title_rows", ["--header-row", "3"], "header on Excel row 3; the 2 row(s) above it are not read"),
    ("unsorted", ["--set", "data.sort=true"], "data.sort: sorted the rows by time (10 rows moved: Excel rows 402-411)"),
    ("gaps", ["--set", "data.fill_gaps=5"], "data.fill_gaps=5: inserted 5 missing timestamps in 1 gap"),
    ("blank_run", ["--set", "data.fill_gaps=12"],
     "data.fill_gaps=12: interpolated 12 blank cells in column 'OT' (Excel rows 102-113)"),
]
HOSTILE_PEAK_MB = 500  # a validate run peaks near 250 MB; parsing the bombs would take gigabytes


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str
    peak_mb: float


def run_cli(*args, env=None, cwd=None, timeout=300) -> Done:
    """`lstm-pipeline ARGS` as a user runs it; also its peak memory (tests/fixtures/peak_rss.py)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as peak:
        proc = subprocess.Popen([sys.executable, str(FIXTURES / "peak_rss.py"), peak.name, str(CLI), *map(str, args)],
                                stdout=out, stderr=err, cwd=cwd, env=env or os.environ | {"PYTHONWARNINGS": "ignore"},
                                start_new_session=True)
        try:
            proc.wait(timeout)  # a hang fails the test instead of the suite
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        out.seek(0)
        err.seek(0)
        return Done(proc.returncode, out.read(), err.read(), int(peak.read() or 0) / 1024)


def _in_parallel(jobs: dict, workers: int = 4) -> dict:
    with ThreadPoolExecutor(workers) as pool:
        futures = {key: pool.submit(run_cli, *args) for key, args in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


@pytest.fixture(scope="module")
def validated(catalogue) -> dict[str, Done]:
    """Every catalogue case through `lstm-pipeline validate --target OT`, a few at a time."""
    return _in_parallel({case: ("validate", catalogue[case], "--target", "OT") for case in [*REFUSED, "valid"]}
                        | {(case, *opts): ("validate", catalogue[case], "--target", "OT", *opts)
                           for case, opts, _ in HANDLED}
                        | {(case, "several"): ("validate", catalogue[case], "--target", "OT,HUFL") for case in REFUSED})


@pytest.mark.parametrize("case", REFUSED)
def test_validate_refuses_bad_input_with_exit_2_and_a_message(validated, catalogue, case):
    done = validated[case]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(line.startswith(f"error: {catalogue[case]}") for line in errors), done.stderr
    for fragment in REFUSED[case]:
        assert fragment in done.stderr, done.stderr


@pytest.mark.parametrize("case", REFUSED)
def test_each_case_is_refused_alike_among_several_series(validated, catalogue, case):
    """The same message when the broken series is one of several (here OT beside HUFL, one model of both)."""
    done = validated[(case, "several")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    for fragment in REFUSED[case]:
        assert fragment in done.stderr, done.stderr


def test_the_valid_workbook_passes(validated):
    assert validated["valid"].returncode == 0 and "rows: 720" in validated["valid"].stdout


def test_hostile_files_are_refused_before_parsing_with_bounded_memory(validated):
    for case in ("entity_bomb", "decompression_bomb", "lying_sizes"):
        assert validated[case].returncode == 2
        assert validated[case].peak_mb < HOSTILE_PEAK_MB, (case, validated[case].peak_mb)


@pytest.mark.parametrize("case, options, said", HANDLED)
def test_options_handle_a_case_and_say_what_they_changed(validated, case, options, said):
    done = validated[(case, *options)]
    assert done.returncode == 0, done.stderr
    assert said in done.stdout, done.stdout


def test_missing_files_and_unsupported_types_are_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("date,OT\n")
    done = _in_parallel({"missing": ("validate", tmp_path / "nope.xlsx"), "txt": ("validate", notes)})
    assert done["missing"].returncode == 2 and "nope.xlsx: no such file" in done["missing"].stderr
    assert done["txt"].returncode == 2 and "notes.txt: unsupported file type .txt" in done["txt"].stderr


# ---- a refused training leaves nothing behind --------------------------------------------------------

TRAIN_SETS = ["data.target=OT", "split.train=0.6", "split.val=0.2", "split.test=0.2", "window.input_length=24",
              "window.horizon=6", "model.layers=1", "model.units=4", "train.epochs=1", "train.patience=0",
              "tracking.experiment=bad-input", "registry.model_name=bad-input-model"]
TRAINED_ON_BAD_INPUT = ["text_in_numeric", "decompression_bomb", "data_on_second_sheet"]


def _fingerprint(path: Path):
    if path.is_dir():
        return ("dir", path.stat().st_mtime_ns)
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture(scope="module")
def champion(prefect_server):
    """A registered model whose version 1 is the champion (registered directly: no training needed)."""
    from mlflow.tracking import MlflowClient

    from tasks.tracking import store

    store.connect()
    client = MlflowClient()
    name = "bad-input-model"
    client.create_registered_model(name)
    client.create_model_version(name, source=Path(tempfile.mkdtemp()).as_uri())
    client.set_registered_model_alias(name, "champion", "1")
    return name


def _registry_state(name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    versions = sorted(v.version for v in client.search_model_versions(f"name='{name}'"))
    return versions, client.get_model_version_by_alias(name, "champion").version


def _latest_run():
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name("bad-input")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]


def _report(run_id: str) -> str:
    import mlflow

    return mlflow.artifacts.load_text(f"runs:/{run_id}/validation_report.txt")


@pytest.mark.slow
@pytest.mark.integration
def test_train_refuses_bad_input_on_the_command_line_and_leaves_nothing_behind(catalogue, champion, cli_env):
    before = {case: _fingerprint(catalogue[case]) for case in TRAINED_ON_BAD_INPUT}
    registry = _registry_state(champion)
    sets = [arg for s in TRAIN_SETS for arg in ("--set", s)]
    with ThreadPoolExecutor(len(TRAINED_ON_BAD_INPUT)) as pool:
        done = dict(zip(TRAINED_ON_BAD_INPUT, pool.map(
            lambda case: run_cli("train", catalogue[case], *sets, env=cli_env), TRAINED_ON_BAD_INPUT)))
    for case, result in done.items():
        assert result.returncode == 2, (case, result.stderr[-3000:])
        assert "Traceback" not in result.stderr, (case, result.stderr[-3000:])
        assert REFUSED[case][0] in result.stderr, (case, result.stderr[-3000:])
        assert _fingerprint(catalogue[case]) == before[case], case
    assert _registry_state(champion) == registry


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("case", [c for c in REFUSED if c != "directory"] + ["directory"])
def test_every_refused_training_ends_its_run_failed_with_the_report_and_nothing_else(catalogue, champion, case):
    from flows.train import train_flow
    from tasks.errors import InputError
    from tasks.settings import load_settings

    settings = load_settings(None, TRAIN_SETS)
    before, registry = _fingerprint(catalogue[case]), _registry_state(champion)
    with pytest.raises(InputError) as err:
        train_flow(str(catalogue[case]), settings)
    run = _latest_run()
    assert run.info.status == "FAILED" and run.data.tags["failure"].startswith("InputError")
    assert _report(run.info.run_id) == "\n".join(map(str, err.value.problems)) + "\n"
    assert REFUSED[case][0] in _report(run.info.run_id)
    assert _registry_state(champion) == registry
    assert _fingerprint(catalogue[case]) == before
