import datetime as dt

import pandas as pd

from tasks.data.times import read_times
from tasks.settings import DataSettings


def _read(cells, **settings):
    return read_times(pd.Series(cells, index=range(2, 2 + len(cells))), DataSettings(**settings))


def test_text_dates_get_one_format_for_the_whole_column_never_cell_by_cell():
    # Cell by cell, 01.07.2016 reads as 7 January (month first) and 13.07.2016 as 13 July.
    reading = _read(["01.07.2016 00:00", "02.07.2016 00:00", "13.07.2016 00:00"])
    assert reading.times.dt.month.tolist() == [7, 7, 7] and not reading.refused
    assert "text dates read as %d.%m.%Y %H:%M" in reading.notes[0]


def test_dates_that_read_both_ways_are_refused_with_both_readings_and_the_setting():
    reading = _read(["01/07/2016", "02/07/2016", "03/07/2016"])
    what, todo = reading.refused[0]
    assert "01/07/2016 is 2016-01-07 00:00 (month first, %m/%d/%Y) or 2016-07-01 00:00 (day first, %d/%m/%Y)" in what
    assert todo == 'say which: pass --set "data.date_format=%m/%d/%Y" or --set "data.date_format=%d/%m/%Y"'
    assert _read(["01/07/2016", "02/07/2016"], date_format="%d/%m/%Y").times.dt.month.tolist() == [7, 7]


def test_year_first_dates_are_never_ambiguous():
    assert not _read(["2016-07-01", "2016-07-02", "2016-07-03"]).refused


def test_clock_times_count_days_across_midnight_and_refuse_going_backwards():
    times = _read([dt.time(23, 55), dt.time(0, 0), "00:05:00", dt.time(0, 10)], start_date="2024-02-28").times
    assert times.astype(str).tolist() == ["2024-02-28 23:55:00", "2024-02-29 00:00:00", "2024-02-29 00:05:00",
                                          "2024-02-29 00:10:00"]
    what, _ = _read([dt.time(10, 0), dt.time(11, 0), dt.time(9, 0)]).refused[0]
    assert "09:00:00 after 11:00:00 (Excel row 4)" in what


def test_offsets_become_utc_and_the_note_names_them():
    reading = _read(["2016-10-30 01:00:00+02:00", "2016-10-30 02:00:00+02:00", "2016-10-30 02:00:00+01:00"])
    assert reading.times.astype(str).tolist() == ["2016-10-29 23:00:00", "2016-10-30 00:00:00", "2016-10-30 01:00:00"]
    assert reading.notes[-1] == "time zone: the timestamps carry +01:00, +02:00; in UTC here"


def test_a_local_clock_with_its_zone_reads_the_repeated_hour_in_order():
    local = ["2016-10-30 01:00", "2016-10-30 02:00", "2016-10-30 02:00", "2016-10-30 03:00"]
    times = _read(local, time_zone="Europe/Berlin").times
    assert times.diff().dropna().eq(pd.Timedelta(hours=1)).all()


def test_a_local_time_in_the_skipped_hour_is_refused_by_name():
    reading = _read(["2016-03-27 01:00", "2016-03-27 02:30", "2016-03-27 03:00"], time_zone="Europe/Berlin")
    what, _ = reading.refused[0]
    assert what == ("1 time in the hour that clocks in Europe/Berlin (data.time_zone) skip when daylight saving "
                    "starts: 2016-03-27 02:30:00 (Excel row 3)")
