"""Runs last (pytest collects tests/ in name order): the suite, training tests included, leaves nothing in the
repository: no ./mlruns models, no forecasts, no lock files."""

import pytest
from conftest import worktree_files


def test_the_suite_leaves_the_working_tree_as_it_found_it(worktree_before):
    if worktree_before is None:
        pytest.skip("not a git checkout")
    assert sorted(worktree_files() - worktree_before) == []
