"""Progress on long steps: a bar (done/total, rate, ETA) on a terminal, one log line otherwise; end to end through
the CLI, a non-interactive run draws no bar and a forced-terminal run does."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest

from flows.progress import PROGRESS_ENV, progress
from store.catalog import put_task
from store.task_files import load_task_dir
from store.workspace import Workspace


def test_off_a_terminal_one_line_per_step(monkeypatch, capsys, caplog):
    monkeypatch.setenv(PROGRESS_ENV, "never")
    with caplog.at_level(logging.INFO, logger="flows.progress"), progress("fine-tune sst2", 30, "example") as advance:
        for _ in range(3):
            advance(10)
    assert capsys.readouterr().err == ""
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
def test_the_cli_is_quiet_off_a_terminal_and_shows_bars_on_one(tmp_path, shared_tasks):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        put_task(Workspace(tmp_path / "ws"), load_task_dir(shared_tasks / "uci_sentiment_imdb"))

    def embed(mode: str | None, workspace: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != PROGRESS_ENV} | ({PROGRESS_ENV: mode} if mode else {})
        command = [sys.executable, "-m", "flows.cli", "--workspace", workspace, "--device", "cpu", "embed"]
        return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)

    (tmp_path / "ws2").mkdir()
    put_task(Workspace(tmp_path / "ws2"), load_task_dir(shared_tasks / "uci_sentiment_imdb"))
    quiet = embed(None, str(tmp_path / "ws"))
    assert quiet.returncode == 0, quiet.stderr
    assert "text/s]" not in quiet.stderr and "%|" not in quiet.stderr  # no bar
    assert "embed uci_sentiment_imdb/train: " in quiet.stdout + quiet.stderr  # one line per step instead
    shown = embed("always", str(tmp_path / "ws2"))
    assert shown.returncode == 0, shown.stderr
    bar = "embed uci_sentiment_imdb/train: 100%"
    assert bar in shown.stderr and "800/800" in shown.stderr and "text/s]" in shown.stderr
