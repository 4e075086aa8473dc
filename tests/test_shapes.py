"""Accepted workbook shapes through the real command line (README.md, "Accepted data shapes").

Each catalogue workbook keeps its values and writes its time another way (or not at all), or stacks
several series: `lstm-pipeline validate` reads it with exit code 0, the right first and last timestamp
and step and a note of what it decided; or refuses it with exit code 2 and the shape's own message.
"""

from __future__ import annotations

import pytest
from test_bad_input import _in_parallel, run_cli

# case -> (options, rows, span as the summary prints it, what a note or the span must say)
ACCEPTED = {
    "seq_data": ([], 800, "steps 0 to 799 (row order)",
                 ["no header row (Excel row 1 holds data, not column names): columns named value",
                  "no time column (no column holds dates or times (value))"]),
    "value_column": ([], 720, "steps 0 to 719 (row order)", ["row order is time, steps numbered 0 to 719"]),
    "valid": (["--time-col", "none", "--target", "OT"], 720, "steps 0 to 719 (row order)",
              ["no time column (data.time_column=none)"]),
    "clock_times": ([], 720, "from 2000-01-01 00:00:00 to 2000-01-30 23:00:00  every 1 hour",
                    ["clock times without dates: days counted from 2000-01-01 (a fixed date; set data.start_date",
                     "(29 of them)"]),
    "clock_times ": (["--set", "data.start_date=2024-05-01"], 720, "from 2024-05-01 00:00:00 to 2024-05-30 23:00:00",
                     ["days counted from 2024-05-01 (data.start_date)"]),
    "day_first_text": ([], 720, "from 2016-07-01 00:00:00 to 2016-07-30 23:00:00  every 1 hour",
                       ["text dates read as %d.%m.%Y %H:%M (the one format that reads every cell)"]),
    "ambiguous_text_dates": (["--set", "data.date_format=%d/%m/%Y %H:%M"], 288,
                             "from 2016-07-01 00:00:00 to 2016-07-12 23:00:00", ["(data.date_format)"]),
    "zoned_csv": ([], 720, "from 2016-10-28 22:00:00 to 2016-11-27 21:00:00  every 1 hour",
                  ["time zone: the timestamps carry +01:00, +02:00; in UTC here"]),
    "zoned_parquet": ([], 720, "from 2016-10-28 22:00:00 to 2016-11-27 21:00:00  every 1 hour",
                      ["time zone: the timestamps carry Europe/Berlin; in UTC here"]),
    "dst_repeated_hour": (["--set", "data.time_zone=Europe/Berlin"], 720,
                          "from 2016-10-28 22:00:00 to 2016-11-27 21:00:00  every 1 hour",
                          ["local time in Europe/Berlin (data.time_zone), converted to UTC"]),
    "dst_missing_hour": (["--set", "data.time_zone=Europe/Berlin"], 720,
                         "from 2016-03-25 23:00:00 to 2016-04-24 22:00:00  every 1 hour", ["local time in Europe/Berlin"]),
    "monthly": ([], 720, "from 1960-01-01 00:00:00 to 2019-12-01 00:00:00  every month (frequency MS)", []),
    "long_format": (["--series", "B"], 720, "from 2016-07-01 00:00:00 to 2016-07-30 23:00:00",
                    ["id column 'store': series B (720 of 1440 rows; 2 series in all: A, B)"]),
    "long_format_one_id": ([], 720, "from 2016-07-01 00:00:00 to 2016-07-30 23:00:00",
                           ["id column 'store' holds one series (A); ignored"]),
}
# case -> (options, the message's fragments)
REFUSED = {
    "clock_backwards": ([], ["column 'date': the clock times (no dates) go backwards without wrapping past midnight: "
                             "04:00:00 after 05:00:00 (Excel row 103)", "put the rows in time order"]),
    "ambiguous_text_dates": ([], ["the text dates read both month-first and day-first (every day is 12 or less): "
                                  "01/07/2016 00:00 is 2016-01-07 00:00 (month first, %m/%d/%Y %H:%M) or 2016-07-01 "
                                  "00:00 (day first, %d/%m/%Y %H:%M)",
                                  'pass --set "data.date_format=%m/%d/%Y %H:%M" or --set "data.date_format=%d/%m/%Y %H:%M"']),
    "dst_repeated_hour": ([], ["column 'date': the times look like a local clock across daylight-saving changes: "
                               "2016-10-30 02:00:00 twice (Excel rows 28-29)", "pass --set data.time_zone=ZONE"]),
    "dst_missing_hour": ([], ["the hour after 2016-03-27 01:00:00 missing", "pass --set data.time_zone=ZONE"]),
    "monthly_gap": ([], ["column 'date': 1 missing timestamp in 1 gap (the step is 1 month): 1 after 1984-12-01 "
                         "00:00:00 (before Excel row 302); add the missing rows"]),
    "long_format": ([], ["sheet 'data': 2 series in id column 'store' (long format): A, B; pass --series ID"]),
}


@pytest.fixture(scope="module")
def validated(catalogue):
    return _in_parallel({("ok", case): ("validate", catalogue[case.strip()], *options)
                         for case, (options, *_) in ACCEPTED.items()}
                        | {("refused", case): ("validate", catalogue[case], *options)
                           for case, (options, _) in REFUSED.items()})


@pytest.mark.parametrize("case", ACCEPTED)
def test_each_accepted_shape_validates_with_its_span_and_notes(validated, case):
    options, rows, span, notes = ACCEPTED[case]
    done = validated[("ok", case)]
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"rows: {rows}  {span}" in done.stdout, done.stdout
    for note in notes:
        assert note in done.stdout, done.stdout


@pytest.mark.parametrize("case", REFUSED)
def test_each_shape_that_cannot_be_read_alone_is_refused_with_its_own_message(validated, case):
    done = validated[("refused", case)]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    for fragment in REFUSED[case][1]:
        assert fragment in done.stderr, done.stderr
    # The format, the clock or the zone was the problem: no advice to sort the rows or fill gaps.
    assert "data.sort" not in done.stderr and "fill_gaps" not in done.stderr
    assert "datetime." not in done.stderr  # no Python reprs


@pytest.mark.slow
@pytest.mark.integration
def test_the_seed_preset_trains_forecasts_and_promotes_on_800_bare_numbers(catalogue, cli_env, tmp_path):
    """The tutorial's own data: one column of 800 numbers, no header, no time. The preset keeps the
    tutorial's settings and holds val and test out of the 800 rows, and says so."""
    data = catalogue["seq_data"]
    sets = ["--set", "registry.model_name=seed-steps", "--set", "tracking.experiment=seed-steps"]
    trained = run_cli("train", data, "--preset", "seed", *sets, env=cli_env, cwd=tmp_path, timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    log = trained.stdout + trained.stderr
    assert "all three scaled down alike to train 533, val 133, test 134 (split.scale_to_fit)" in log
    assert "model: seed-steps version 1" in trained.stdout
    out = tmp_path / "next.csv"
    forecast = run_cli("forecast", data, "--model", "models:/seed-steps@champion", "--out", out, *sets,
                       env=cli_env, cwd=tmp_path)
    assert forecast.returncode == 0, forecast.stderr[-3000:]
    import pandas as pd

    table = pd.read_csv(out)
    assert table["timestamp"].tolist() == list(range(800, 824))  # numbered on after the last step, 799
    promoted = run_cli("promote", data, "--version", "1", *sets, env=cli_env, cwd=tmp_path)
    assert promoted.returncode == 0 and "seed-steps version 1" in promoted.stdout, promoted.stderr[-3000:]
