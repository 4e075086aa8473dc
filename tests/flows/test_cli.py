"""The command line as a user runs it: a real subprocess, exit codes, stderr."""

import os
import subprocess
import sys

import pytest


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=os.environ | {"PYTHONWARNINGS": "ignore"})


def test_validate_prints_a_summary(valid_workbook):
    done = _cli("validate", valid_workbook, "--target", "OT")
    assert done.returncode == 0, done.stderr
    assert "rows: 720" in done.stdout and "frequency h" in done.stdout


@pytest.mark.parametrize("case, fragment", [
    ("missing_column", "column 'OT' not found; columns present: date, HUFL"),
    ("text_in_numeric", "hold text"),
    ("directory", "is a folder"),
])
def test_bad_input_exits_2_with_a_message_and_no_traceback(catalogue, case, fragment):
    done = _cli("validate", catalogue[case], "--target", "OT")
    assert done.returncode == 2
    assert fragment in done.stderr and "Traceback" not in done.stderr


def test_bad_setting_exits_2(valid_workbook):
    done = _cli("train", valid_workbook, "--target", "OT", "--set", "train.epochs=lots")
    assert done.returncode == 2 and "train.epochs" in done.stderr and "Traceback" not in done.stderr
