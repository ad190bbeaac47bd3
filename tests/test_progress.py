"""Progress on long steps: a bar (done/total, rate, ETA) on a terminal, one log line otherwise; end to end through
the CLI, a non-interactive run draws no bar and a forced-terminal run does."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from subprocess import PIPE

import pytest

from flows.progress import PROGRESS_ENV, progress
from store.catalog import put_task
from store.task_files import load_task_dir, task_from_table
from store.workspace import Workspace


def test_off_a_terminal_one_line_per_step(monkeypatch, capsys, caplog):
    monkeypatch.setenv(PROGRESS_ENV, "never")
    with caplog.at_level(logging.INFO, logger="flows.progress"), progress("fine-tune sst2", 30, "example") as advance:
        for _ in range(3):
            advance(10)
    assert "%|" not in capsys.readouterr().err  # no tqdm bar (stderr may carry other loggers' lines)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("fine-tune sst2: 30/30 examples in ") and "examples/s" in line


def test_a_forced_terminal_draws_the_bar(monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, "always")
    with progress("GIO picks", 4, "pick") as advance:
        advance(2)
        advance(2)
    err = capsys.readouterr().err
    assert "GIO picks" in err and "4/4" in err and "pick/s" in err  # steps done/total and the rate


@pytest.mark.slow
def test_the_cli_is_quiet_off_a_terminal_and_shows_bars_on_one(tmp_path, shared_tasks, prefect_harness):
    """Two real CLI processes side by side, each embedding a 40-row slice of a real task (the bar's behaviour does
    not depend on the rows' number)."""
    rows = load_task_dir(shared_tasks / "uci_sentiment_imdb").split("train").to_pandas().head(40)
    task = task_from_table(rows[["text", "label"]], "imdb40")

    def embed(mode: str | None, folder: str) -> subprocess.Popen:
        put_task(Workspace(tmp_path / folder), task)
        env = {k: v for k, v in os.environ.items() if k != PROGRESS_ENV} | ({PROGRESS_ENV: mode} if mode else {})
        command = [sys.executable, "-m", "flows.cli", "--workspace", str(tmp_path / folder), "--device", "cpu"]
        return subprocess.Popen([*command, "embed"], stdout=PIPE, stderr=PIPE, text=True, env=env)

    quiet_run, shown_run = embed(None, "ws"), embed("always", "ws2")
    (quiet_out, quiet_err), (_, shown_err) = quiet_run.communicate(timeout=600), shown_run.communicate(timeout=600)
    assert quiet_run.returncode == 0, quiet_err
    assert "text/s]" not in quiet_err and "%|" not in quiet_err  # no bar
    assert "embed imdb40/train: " in quiet_out + quiet_err  # one line per step instead
    assert shown_run.returncode == 0, shown_err
    assert "embed imdb40/train: 100%" in shown_err and "40/40" in shown_err and "text/s]" in shown_err
