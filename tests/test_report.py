"""The HTML report: built from a small real workspace (real tasks, real embeddings, a stored divergence ranking,
a GIO subset, measured gains written through the store API and a real evaluation), checked for content, then rendered in
headless Chromium (screenshot kept under test-artifacts/)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from store.advice import SHIPPED_ATLAS, put_advice
from store.measured import put_transfer_gains
from store.runs import start_run
from store.selections import put_selection_result
from store.workspace import Workspace

TASKS = ("uci_sentiment_imdb", "uci_sentiment_amazon", "tweeteval_stance_atheism")
TARGET = "uci_sentiment_imdb"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# The real run behind the report (five flows on 240 texts with the tiny encoder) takes seconds, most of it Prefect's;
# the checks on top of it take seconds too (Chromium: about 2 s).
real_run = pytest.mark.slow


def _gains(baseline: float, means: dict[str, float], std: float = 0.004) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": list(means),
            "baseline_mean": baseline,
            "source_mean": list(means.values()),
            "mean_gain": [m - baseline for m in means.values()],
            "std_gain": std,
            "positive_share": [1.0 if m > baseline else 0.0 for m in means.values()],
            "p_value": float("nan"),
            "n_seeds": 3,
        }
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory, task_workspace, prefect_harness, tiny_encoder) -> tuple[Workspace, Path]:
    """A workspace with three real tasks (80 training rows each), their train embeddings, a centroid-cosine/MMD
    ranking for TARGET, measured gains for two targets and an evaluation; and its report. The flows run the tiny
    seeded encoder: the report shows what is stored, whatever a model learned."""
    from flows import advise_sources, embed_tasks, evaluate_rankings, rank_sources, select_training_subset
    from flows.rank import RankRequest
    from flows.select import SelectionRequest
    from reports.html import build_report

    ws = task_workspace(tmp_path_factory.mktemp("report") / "ws", *TASKS)
    embed_tasks(tasks=list(TASKS), splits=["train"], model=tiny_encoder, device="cpu", workspace=str(ws.root))
    rank_sources(
        RankRequest(
            target=TARGET,
            sources=list(TASKS[1:]),
            methods=("centroid-cosine", "mmd"),
            model=tiny_encoder,
            device="cpu",
            workspace=str(ws.root),
        )
    )
    put_transfer_gains(
        ws, "cfg", TARGET, _gains(0.80, {"uci_sentiment_amazon": 0.812, "tweeteval_stance_atheism": 0.79}), "m1"
    )
    put_transfer_gains(
        ws, "cfg", "tweeteval_stance_atheism", _gains(0.60, {"uci_sentiment_amazon": 0.61, TARGET: 0.605}), "m1"
    )
    put_transfer_gains(
        ws, "cfg", "uci_sentiment_amazon", _gains(0.85, {TARGET: 0.86, "tweeteval_stance_atheism": 0.84}), "m1"
    )  # with the atheism target: a source prior for both of TARGET's sources
    evaluate_rankings(target=TARGET, workspace=str(ws.root))
    select_training_subset(
        SelectionRequest(
            "uci_sentiment_amazon", TARGET, method="gio", budget=40, model=tiny_encoder, device="cpu",
            workspace=str(ws.root),
        )
    )  # fmt: skip
    measured = {("full", 1.0): (0.80, 0.90), ("random", 0.2): (0.68, 0.85), ("gio", 0.2): (0.85, 0.85)}
    for (arm, budget), values in measured.items():  # a selection-quality measurement: 2 seeds
        for seed, value in enumerate(values):
            put_selection_result(
                ws,
                "sq",
                pool="uci_sentiment_amazon",
                arm=arm,
                method="random" if arm == "full" else arm,
                budget=budget,
                seed=seed,
                subset_id=f"{arm}-{seed}",
                n_train=int(800 * budget),
                train_seconds=1.0,
                metrics={TARGET: {"primary": value, "accuracy": value}},
                run_id="m2",
            )
    # The advisor with nothing measured per seed to learn from (its fused fallback) for TARGET, and stored learned
    # advice with a "don't transfer" call for the atheism target.
    advise_sources(
        target=TARGET, sources=list(TASKS[1:]), inputs=("centroid-cosine", "mmd"), atlas="none", model=tiny_encoder,
        device="cpu", workspace=str(ws.root),
    )  # fmt: skip
    run_id, config = start_run(ws, "advise_sources", {})
    learned = pd.DataFrame(
        {"rank": [1], "expected_gain": [-1.25], "lower": [-3.5], "upper": [-0.25], "top_features": [{"z:mmd": -0.5}]},
        index=pd.Index(["uci_sentiment_amazon"], name="source"),
    )
    put_advice(
        ws, run_id, config, "tweeteval_stance_atheism", "advisor", learned, basis="learned", learner="ridge",
        dont_transfer=True, training_targets=11, level=0.8,
    )  # fmt: skip
    return ws, build_report(ws, ws.root / "report")


@real_run
def test_report_content(report, tiny_encoder):
    ws, index = report
    assert index == ws.root / "report" / "index.html" and index.is_file()
    assert not [p for p in index.parent.iterdir() if p.name != "index.html"]  # no temporary files left behind
    page = index.read_text(encoding="utf-8")
    for name in TASKS:
        assert name in page
    # advice first: the fused fallback for TARGET, the learned "don't transfer" call with its interval
    advice = page[page.index('id="advice"') : page.index('id="gains"')]
    assert page.index('id="advice"') < page.index('id="gains"')
    fallback = advice[advice.index(f"target {TARGET}") :]
    assert "No model: the advisor had 0 measured targets" in fallback and "uci_sentiment_amazon" in fallback
    learned = advice[advice.index("target tweeteval_stance_atheism") : advice.index(f"target {TARGET}")]
    assert "Don't transfer:</strong>" in learned and "Learned (ridge)" in learned and "11 other targets" in learned
    assert '<td class="num">-1.2</td>' in learned and "-3.5 to -0.2" in learned and "z:mmd -0.50" in learned
    # 1. heatmap of measured gains, in points: mean ± std per cell, a colour scale
    heat = re.search(r'<svg[^>]*class="heatmap".*?</svg>', page, re.S)
    assert heat is not None
    assert "+1.2 ± 0.4" in heat.group(0) and "-1.0 ± 0.4" in heat.group(0) and "+0.5 ± 0.4" in heat.group(0)
    assert "mean gain (points)" in heat.group(0) and "linearGradient" in heat.group(0)
    assert "source task" in heat.group(0) and "target task" in heat.group(0)
    # 2. predicted rankings beside the measured one
    ranking = page[page.index('id="rankings"') : page.index('id="quality"')]
    assert f"target {TARGET}" in ranking and "measured (gain, points)" in ranking
    assert "centroid-cosine (score; higher is better)" in ranking and "mmd (score; lower is better)" in ranking
    assert "No rankings stored for tweeteval_stance_atheism yet" in ranking  # gains but no ranking: a note
    # 3. the quality table, baselines included
    quality = page[page.index('id="quality"') : page.index('id="map"')]
    assert 'class="quality"' in quality and "spearman" in quality and "regret@1" in quality
    for method in ("centroid-cosine", "mmd", "random", "source-prior"):
        assert f"<td>{method}</td>" in quality
    # 4. the PCA map: one point per embedded task
    scatter = re.search(r'<svg[^>]*class="scatter".*?</svg>', page, re.S)
    assert scatter is not None and scatter.group(0).count('class="task-point"') == len(TASKS)
    assert "PC1 (" in scatter.group(0) and "% of variance)" in scatter.group(0)
    # 5. the stored subset, with its per-example scores
    selections = page[page.index('id="selections"') : page.index('id="selection-quality"')]
    assert 'class="selections"' in selections and "<td>40 / 80</td>" in selections and "<td>50.0%</td>" in selections
    assert "<td>gio</td>" in selections and "<td>40</td>" in selections and "(count)" in selections
    # 6. selection quality: shares of the full-pool score (0.85): gio (1.0, 1.0), random (0.8, 1.0)
    quality = page[page.index('id="selection-quality"') : page.index('id="reference"')]
    curves = re.search(r'<svg[^>]*class="lines".*?</svg>', quality, re.S)
    assert curves is not None and curves.group(0).count("<polyline") == 0  # one budget: points, no lines
    assert curves.group(0).count('class="series"') == 2 and "% of the full-pool score" in curves.group(0)
    assert "stroke-dasharray" in curves.group(0)  # the full-pool reference line
    assert "<td>gio</td><td>20%</td><td>160</td><td>100.0 ± 0.0</td>" in quality
    assert "<td>random</td><td>20%</td><td>160</td><td>90.0 ± 14.1</td>" in quality
    assert "<td>+8.5 ± 12.0</td>" in quality  # gio minus random, paired by seed, in points
    # 8. the committed benchmarks as the reference: the shipped atlas and selection-quality results
    reference = page[page.index('id="reference"') : page.index('id="runs"')]
    atlas = pd.read_parquet(SHIPPED_ATLAS / "transfer_atlas.parquet")
    atlas = atlas[atlas.recipe == atlas.recipe.mode().iloc[0]]
    assert f"Transfer atlas: {len(atlas)} measured fine-tunes over {atlas.target.nunique()} targets" in reference
    assert 'class="reference-selection"' in reference and "<td>gio</td><td>10%</td>" in reference
    # 9. run metadata
    runs = page[page.index('id="runs"') :]
    for flow in ("embed_tasks", "rank_sources", "evaluate_rankings"):
        assert f"<td>{flow}</td>" in runs
    assert escape(tiny_encoder) in runs and "torch " in runs and "python " in runs and "<td>completed" in runs
    assert "total_s " in runs  # timings
    # offline: nothing fetched from elsewhere, no script
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page) and "<script" not in page


@real_run
def test_report_cli_and_target(report, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    ws, _ = report
    shown = CliRunner().invoke(
        app, ["--workspace", str(ws.root), "report", "--target", TARGET, "--out", str(tmp_path / "site")]
    )
    assert shown.exit_code == 0, shown.output
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert str(tmp_path / "site" / "index.html") in shown.output.replace("\n", "")
    assert f"TransferScope report: {TARGET}" in page and 'class="heatmap"' in page
    heat = re.search(r'<svg[^>]*class="heatmap".*?</svg>', page, re.S)
    assert heat is not None and "+0.5 ± 0.4" not in heat.group(0)  # the other target's row is left out
    missing = CliRunner().invoke(app, ["--workspace", str(ws.root), "report", "--target", "nope"])
    assert missing.exit_code == 2 and "No task 'nope'" in missing.output


def test_report_empty_and_escaped(tmp_path):
    from reports.html import build_report

    page = build_report(tmp_path / "empty").read_text(encoding="utf-8")
    assert "This workspace is empty" in page
    ws = Workspace(tmp_path / "ws")
    put_transfer_gains(ws, "cfg", "t<1>", _gains(0.5, {"<img src=x onerror=alert(1)>": 0.6}), "m")
    page = build_report(ws, tmp_path / "site").read_text(encoding="utf-8")
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "t&lt;1&gt;" in page
    assert "+10.0 ± 0.4" in page
    assert "No train-split embeddings stored yet" in page and "No ranking-quality evaluation stored yet" in page


def _advice(first: str, second: str, measured: float | None) -> pd.DataFrame:
    """Learned advice for two sources, ``first`` ranked first (with a measured gain when verified)."""
    return pd.DataFrame(
        {
            "rank": [1, 2],
            "expected_gain": [2.0, 1.0],
            "lower": [0.5, -0.5],
            "upper": [3.5, 2.5],
            "measured_gain": [measured, None],
            "top_features": [{"z:mmd": 0.5}, {"z:mmd": -0.5}],
        },
        index=pd.Index([first, second], name="source"),
    )


def test_report_shows_the_newest_advice_and_the_method_that_made_it(tmp_path):
    """An old advisor+verify advice and a newer plain advisor one: the report shows the newer and names its method;
    a still newer verification is shown in turn."""
    from reports.html import advice_section

    ws = Workspace(tmp_path / "ws")

    def advise(run_id: str, method: str, advice: pd.DataFrame) -> None:
        put_advice(
            ws, run_id, "cfg", "t", method, advice, basis="learned", learner="ridge", dont_transfer=False,
            training_targets=11, level=0.8,
        )  # fmt: skip

    advise("old-verify", "advisor+verify", _advice("a", "b", measured=1.5))
    advise("new-plain", "advisor", _advice("b", "a", measured=None))
    page = advice_section(ws, None)
    rows = re.findall(r'<td class="num">(\d)</td><td>(\w)</td>', page)
    assert rows == [("1", "b"), ("2", "a")]  # the plain advisor's order
    assert "old-verify" not in page and "1.5</td>" not in page  # nothing of the old one
    assert "Newest advice: <code>advisor</code> (run <code>new-plain</code>" in page
    assert "recommend_sources(&#x27;t&#x27;, method=&#x27;advisor&#x27;)" in page
    advise("newer-verify", "advisor+verify", _advice("a", "b", measured=1.5))
    page = advice_section(ws, "t")
    assert "Newest advice: <code>advisor+verify</code> (run <code>newer-verify</code>" in page
    assert "method=&#x27;advisor+verify&#x27;" in page and '<td class="num">1.5</td>' in page
    assert re.findall(r'<td class="num">(\d)</td><td>(\w)</td>', page) == [("1", "a"), ("2", "b")]


def test_report_labels_regret_as_lost_performance_and_shows_points_lost(tmp_path):
    """regret@k is a share of the best performance, not of a gain; points lost is shown beside it, here and in
    the committed reference."""
    from reports.html import quality_section, reference_section
    from store.rankings import put_ranking_quality

    ws = Workspace(tmp_path / "ws")
    values = {"regret@1": 10.0, "points_lost@1": 8.0, "spearman": -1.0}  # best 0.80, the top source 0.72
    rows = [{"method": "m", "ranking_run_id": None, "n_sources": 3, "metric": k, "value": v} for k, v in values.items()]
    put_ranking_quality(ws, "ev", "t", "cfg", rows)
    page = quality_section(ws, None)
    assert "<th>regret@1</th><th>points_lost@1</th><th>spearman</th>" in page
    assert '<td class="num">10.000</td><td class="num">8.000</td>' in page
    reference = reference_section()
    for shown in (page, reference):
        assert "gain lost" not in shown and "% of the best gain" not in shown
        assert "% of the best performance (the best mean score over the sources and no transfer" in shown
        assert "points_lost@k: the same loss in points" in shown


def _png_summary(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed image data) of a PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            chunks.append(data[offset + 8 : offset + 8 + length])
        offset += 12 + length
    return width, height, len(set(zlib.decompress(b"".join(chunks))))


def _chromium(index: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *flags,
        index.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


@real_run
def test_report_renders_in_chromium(report, tmp_path):
    assert Path(CHROMIUM).exists() or shutil.which("chromium"), (
        "Chromium is not installed: the report's browser test needs it (`apt-get install -y chromium`; .ci/run "
        "installs it before `make test`)."
    )
    _, index = report
    page = index.read_text(encoding="utf-8")
    dom = _chromium(index, tmp_path / "profile-dom", "--dump-dom")
    assert dom.stdout.count("<svg") == page.count("<svg") == 4, "every figure must be in the rendered DOM"
    assert 'class="heatmap"' in dom.stdout and 'class="scatter"' in dom.stdout and 'class="lines"' in dom.stdout
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    rendered = _chromium(index, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000")
    for done in (dom, rendered):
        errors = [
            line for line in done.stderr.splitlines() if "Uncaught" in line or re.search(r"CONSOLE.*[Ee]rror", line)
        ]
        assert not errors, "console errors:\n" + "\n".join(errors)
    assert shot.is_file(), f"no screenshot written:\n{rendered.stderr[-3000:]}"
    width, height, distinct = _png_summary(shot)
    assert (width, height) == (1280, 2000)
    assert shot.stat().st_size > 20_000 and distinct > 50, "the screenshot looks blank"


@real_run
def test_report_reads_on_a_phone_and_every_chart_is_titled_and_labelled(report, tmp_path):
    _, index = report
    page = index.read_text(encoding="utf-8")
    # Every chart: a title (its accessible name and first <title>), two axis titles, units on its value axes.
    charts = re.findall(r"<svg[^>]*>.*?</svg>", page, re.S)
    assert len(charts) == 4  # heatmap, scatter, selection curves, recommend's simulated curve
    for chart in charts:
        title = re.match(r'<svg[^>]*aria-label="([^"]+)"[^>]*><title>([^<]+)</title>', chart)
        assert title is not None and title.group(1) == title.group(2), chart[:300]
        assert chart.count('font-weight="600"') >= 2, "axis titles"
    heat, scatter, lines = (
        next(c for c in charts if f'class="{k}"' in c[:200]) for k in ("heatmap", "scatter", "lines")
    )
    assert "mean gain (points)" in heat and "source task" in heat and "target task" in heat
    assert "PC1 (" in scatter and "% of variance)" in scatter
    assert "budget (share of the pool)" in lines and "% of the full-pool score" in lines
    recommend = next(c for c in charts if "target fine-tunes spent" in c)
    assert "regret@1, % of the best performance" in recommend
    # At a phone's width (390 px) the page body does not scroll sideways: the report has no script, so a copy with
    # one that measures the overflow is rendered.
    probe = tmp_path / "probe.html"
    measure = (
        "<script>document.body.setAttribute('data-overflow', "
        "String(document.documentElement.scrollWidth - document.documentElement.clientWidth))</script>"
    )
    probe.write_text(page.replace("</body>", measure + "</body>"), encoding="utf-8")
    dom = _chromium(probe, tmp_path / "profile-phone", "--dump-dom", "--window-size=390,844")
    overflow = re.search(r'data-overflow="(-?\d+)"', dom.stdout)
    assert overflow is not None, dom.stdout[-2000:]
    assert int(overflow.group(1)) <= 0, f"the page body scrolls sideways by {overflow.group(1)} px at 390 px"


def test_line_chart_draws_each_series_with_error_bars_and_escapes_names():
    from reports.svg import line_chart

    svg = line_chart(
        {"gio": [(0.1, 90.0, 2.0), (0.5, 99.0, 1.0), (0.2, 95.0, 0.5)], "<b>": [(0.1, 80.0, 3.0), (0.2, 85.0, 0.0)]},
        title="quality",
        x_label="budget",
        y_label="% of full",
        reference=100.0,
    )
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 5 and svg.count('class="series"') == 2
    assert "&lt;b&gt;" in svg and "<b>" not in svg
    first = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
    xs = [float(p.split(",")[0]) for p in first]
    assert xs == sorted(xs)  # points joined in budget order
    assert "gio: x 0.5, y 99 ± 1" in svg


def test_report_prints_the_stored_interval_level_and_unbounded_bounds(tmp_path):
    """The interval's level is the one stored with the advice (not a fixed 80%), infinite bounds read "unbounded",
    and the page says the interval is calibrated on multi-seed means, not single runs."""
    from reports.html import advice_section

    ws = Workspace(tmp_path / "ws")
    advice = _advice("a", "b", measured=None).assign(lower=[-1.0, -np.inf], upper=[2.0, np.inf])
    put_advice(
        ws, "r1", "cfg", "t", "advisor", advice, basis="learned", learner="ridge", dont_transfer=False,
        training_targets=3, level=0.9,
    )  # fmt: skip
    page = advice_section(ws, "t")
    assert "90% interval" in page and "80%" not in page
    assert "-1.0 to 2.0" in page and "unbounded to unbounded" in page
    assert "a single fine-tune varies more" in page


def test_reference_section_shows_which_atlas_targets_are_informative_and_their_table():
    """The committed atlas's per-target informativeness tests and the ranking table over the informative targets
    (with the paired 95% interval), beside the all-targets table."""
    from reports.html import reference_section
    from store.benchmarks import committed_ranking_quality

    page = reference_section()
    _, meta = committed_ranking_quality()
    informative = meta["informative_targets"]
    assert informative and len(meta["table_informative"])
    assert "<th>baseline skill</th><th>ANOVA p</th><th>reliability</th><th>informative</th>" in page
    for target in ("cb", "cola"):
        row = page[page.index(f"<td>{target}</td>") :].split("</tr>")[0]
        assert row.endswith("<td>yes</td>" if target in informative else "<td>no</td>")
    pilots = pd.read_csv(SHIPPED_ATLAS / "atlas_targets.csv").query("stage == 'pilot' and recipe == 'medium'")
    assert len(pilots)  # the atlas v2 pilot screens (bench transfer_atlas --stage pilot)
    for pilot in pilots.itertuples():
        row = page[page.index(f"<tr><td>{pilot.target}</td>") :].split("</tr>")[0]
        assert row.endswith("<td>pilot: learns</td>" if pilot.passes else "<td>pilot: does not learn</td>")
    assert f"Ranking quality on the {len(informative)} informative atlas targets" in page
    # recommend's procedure replayed on the atlas: its curve and its table, one row per policy, budget and group
    simulated = pd.read_csv(SHIPPED_ATLAS / "recommend_simulation.csv").query("scenario == 'real'")
    table = page[page.index('class="reference-recommend"') :].split("</table>")[0]
    assert "regret@1 against target fine-tunes spent" in page and table.count("<tr>") == len(simulated) + 1
    oracle = simulated[(simulated.policy == "one-seed-oracle") & (simulated.group == "all")].iloc[0]
    assert f'<td>one-seed-oracle</td><td>each once</td><td class="num">{oracle.runs:.1f}</td>' in table
    assert page.index("informative atlas targets") < page.index("Ranking quality on complete atlas")
    assert "<th>Δ NDCG@5</th>" in page
