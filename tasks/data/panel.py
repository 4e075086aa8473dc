"""The series of a file, read, cleaned and validated: what fits, forecasts and the promotion gate start from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from tasks.data.clean import clean_data
from tasks.data.ingest import read_workbook
from tasks.data.validate import Summary, validate_data
from tasks.settings import Settings


@dataclass(frozen=True)
class Member:
    """One series of the data, validated."""

    id: str  # its column (wide format), or its id (long format)
    series: pd.DataFrame  # DatetimeIndex (or step numbers); its target, then the features, as float
    summary: Summary


@dataclass(frozen=True)
class Prepared:
    """The series of a file, read, cleaned and validated once, with what every run logs about where they
    came from. One series, or several for one global model (`several`)."""

    members: tuple[Member, ...]
    digest: str  # sha256 of the file's bytes
    source: str  # the data file, as the user named it
    several: bool = False  # several series asked for: the model forecasts each, its run reports each
    id_column: str | None = None  # long format: the column holding the ids; None: wide, or one series
    skipped: dict[str, str] = field(default_factory=dict)  # series left out by data.skip_bad_series, and why

    @property
    def series(self) -> pd.DataFrame:
        """The series (the first, when there are several)."""
        return self.members[0].series

    @property
    def summary(self) -> Summary:
        return self.members[0].summary

    @property
    def rows(self) -> int:
        """Rows of the shortest series: what a configuration's windows and splits must fit into."""
        return min(len(m.series) for m in self.members)

    def head(self, rows: int) -> Prepared:
        """The first `rows` rows only: what a backtest fold may see."""
        return replace(self, members=tuple(replace(m, series=m.series.iloc[:rows]) for m in self.members))

    def latest(self, rows: int) -> pd.DataFrame:
        """The latest `rows` rows, as users pass them to the model: one series' rows; several series as the
        file holds them, stacked under the id column (long) or side by side (wide)."""
        if not self.several:
            return self.series.iloc[-rows:].reset_index()
        if self.id_column:
            # Ids that are whole numbers in the file stay numbers, so that a served model takes them as such.
            numeric = all(m.id.lstrip("-").isdigit() and str(int(m.id)) == m.id for m in self.members)
            return pd.concat([m.series.iloc[-rows:].reset_index().assign(**{self.id_column: int(m.id) if numeric
                                                                            else m.id}) for m in self.members],
                             ignore_index=True)
        features = list(self.summary.features)
        columns = [m.series[[m.summary.target]] for m in self.members]
        # The features of every row any series covers (a series cut to its own span has them only there).
        shared = pd.concat([m.series[features] for m in self.members]).groupby(level=0).first()
        wide = pd.concat([*columns, shared], axis=1)
        first = min(m.series.index[-rows] for m in self.members)  # a series that ends early has its rows too
        return wide.loc[first:].reset_index()


def prepare_data(data: str, settings: Settings) -> Prepared:
    """Read, clean (only as data.sort / data.fill_gaps ask) and validate: the series every fit starts from."""
    tables = clean_data(read_workbook(Path(data), settings.data), settings.data)
    valid = validate_data(tables, settings, data)
    members = tuple(Member(i, series, summary) for i, (series, summary) in valid.series.items())
    digest = next(iter(tables.tables.values())).digest
    return Prepared(members, digest, data, tables.several, tables.id_column, valid.skipped)
