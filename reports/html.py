"""A static HTML report of what a workspace holds, built from the store alone (nothing is recomputed).

``build_report(workspace, out_dir=None, target=None)`` writes ``out_dir/index.html`` (default: the workspace's
``report/`` folder) and returns its path. The page opens offline: CSS and figures (inline SVG from `reports.svg`)
are embedded, and there is no JavaScript. Sections:

1. which source first: per target, ``recommend``'s newest answer (``recommendations``: the arm it chose, or don't
   transfer, each arm's gain over no transfer with the runs it was measured with and P(best)), then the advisor's
   newest advice, from whichever method stored it last (``advisor`` or ``advisor+verify``: expected gains,
   intervals, "don't transfer", verification);
2. measured gains (targets × sources heatmap of ``transfer_gains``, each target's current measurement:
   ``current_measurements``);
3. per target, each method's newest predicted ranking (``pair_scores``) beside the measured ranking;
4. ranking quality (``Results.method_quality``);
5. a 2-D PCA map of the tasks' train-split embedding centroids (``embedding_vectors``, one encoder config);
6. the stored training subsets (``selections``, with their ``example_scores`` counts);
7. selection quality: the share of the full-pool score each selection method's subsets reach, per budget, with
   seed spread (``Results.selection_quality``, from ``measure_selection``);
8. the committed benchmarks as the reference (`store.benchmarks`: atlas, ranking and selection quality);
9. metadata of the most recent runs (model, library versions, config hash, timings, status).

Reads go through the store only: its stored queries (``store/queries/report_*.sql``, run by ``Workspace.sql`` over
the views) and `store.results.Results`; there is no SQL here. Every text from the store is HTML-escaped; a missing
piece gives a short note instead of an error.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.svg import heatmap, line_chart, scatter
from store.advice import SHIPPED_ATLAS
from store.artifacts import replace_atomically
from store.benchmarks import (
    atlas_summary,
    committed_ranking_quality,
    committed_recommend_simulation,
    committed_selection_generalisation,
    committed_selection_quality,
)
from store.errors import MissingResultError
from store.results import Results
from store.workspace import Workspace, query

RECENT_RUNS = 25
QUALITY_ORDER = (
    "regret@1",
    "regret@3",
    "points_lost@1",
    "points_lost@3",
    "ndcg@5",
    "spearman",
    "kendall",
    "top1_hit",
)  # shown; the rest: Results
LOSS_MEANING = (
    "regret@k: % of the best performance (the best mean score over the sources and no transfer; a score, not a gain) "
    "lost by taking the best of the top k; points_lost@k: the same loss in points of the target's primary metric "
    "(accuracy points for classification), what following the ranking costs. Both: lower is better."
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#1b1b1b;margin:0;
 background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:20px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:4px 0 2px}h2{font-size:20px;margin:34px 0 8px;border-bottom:2px solid #e3e6ea;
 padding-bottom:4px}h3{font-size:16px;margin:22px 0 6px}
.meta,.note,figcaption{color:#555}.note{background:#f3f4f6;border-left:4px solid #b8bec7;padding:6px 10px}
nav a{margin-right:14px}figure{margin:8px 0;overflow-x:auto}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #d9dde2;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.hit{background:#dff0d8}table.runs td:nth-child(-n+3){white-space:nowrap}
.sub{color:#666;font-size:12px}code{font-size:12px}
table{display:block;max-width:100%;overflow-x:auto}p,figcaption,td{overflow-wrap:anywhere}
@media (max-width:700px){main{padding:12px 10px 40px}h1{font-size:21px}}
"""


# ------------------------------------------------------------------------------------------------ helpers


def _fmt(value: Any, digits: int = 3) -> str:
    """A cell value as escaped text (floats to ``digits`` decimals, missing as a dash)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    if isinstance(value, pd.Timestamp):
        return escape(value.strftime("%Y-%m-%d %H:%M:%S"))
    return escape(str(value))


def _table(headers: list[str], rows: list[list[str]], *, css_class: str = "") -> str:
    """An HTML table; ``headers`` are escaped here, ``rows`` hold cell HTML (already escaped), optionally with a
    leading ``<td ...>`` of their own."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _points(gain: float) -> str:
    """A gain in points (×100 of the primary metric)."""
    return f"{gain * 100:+.1f}"


def _read(ws: Workspace, name: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """The stored query ``store/queries/<name>.sql`` run over the workspace's views."""
    return ws.sql(query(name), params)


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# ------------------------------------------------------------------------------------------------ sections


def recommendations_block(ws: Workspace, target: str | None) -> str:
    """Per target, the newest answer of ``recommend`` (`store.results.Results.recommendation`), its arms' gains."""
    targets = _read(ws, "report_recommended_targets").target.tolist()
    targets = [t for t in targets if target is None or t == target]
    if not targets:
        return _note("No recommendation stored yet. Run `transferscope recommend TARGET` (measures to decide).")
    out = []
    for name in targets:
        arms = Results(ws).recommendation(name)
        a = arms.attrs
        verdict_text = (
            f"don't transfer: fine-tune on {escape(name)} alone"
            if a["dont_transfer"]
            else f"fine-tune on <strong>{escape(a['answer'])}</strong> first"
        )
        out.append(
            f'<h3 id="recommend-{escape(name)}">recommend for {escape(name)}: {verdict_text}</h3>'
            f"<p class='meta'>P(best) {a['p_best']:.2f} after {a['runs']} target fine-tunes ({a['seconds']:.0f} s; "
            f"stopped: {escape(a['stopped'])} at confidence {a['confidence']:g}); run <code>"
            f"{escape(str(a['run_id']))[:12]}</code>; every row: <code>Results(workspace).recommendation("
            f"{escape(repr(name))})</code>.</p>"
        )
        headers = ["arm", "prior gain", "runs", "gain over no transfer", "± sd", "P(best)"]
        rows = [
            [
                ("<strong>" if r.chosen else "")
                + escape(r.source or "(no transfer)")
                + ("</strong>" if r.chosen else ""),
                f'<td class="num">{_fmt(r.prior_gain, 1)}</td>',
                f'<td class="num">{int(r.pulls)}</td>',
                f'<td class="num">{_fmt(r.gain, 1)}</td>',
                f'<td class="num">{_fmt(r.gain_sd, 1)}</td>',
                f'<td class="num">{_fmt(r.p_best, 2)}</td>',
            ]
            for r in arms.itertuples()
        ]
        out.append(_table(headers, rows, css_class="recommend"))
    return "".join(out)


def advice_section(ws: Workspace, target: str | None) -> str:
    """Section 1: per target, the advisor's newest advice, whichever method stored it last (``advisor`` or
    ``advisor+verify``, named), with its intervals and its "don't transfer" call."""
    out = ['<h2 id="advice">1. Which source first</h2>', recommendations_block(ws, target)]
    newest = _read(ws, "report_newest_advice")
    if target is not None:
        newest = newest[newest.target == target]
    if newest.empty:
        return "".join(out) + _note(
            "No advice stored yet. Run `transferscope rank TARGET --method advisor` (add `--verify 2` to fine-tune "
            "the top two and re-rank by what they measure)."
        )
    results = Results(ws)
    for stored in newest.itertuples(index=False):
        name, method = str(stored.target), str(stored.method)
        advice = results.recommend_sources(name, k=10_000, method=method)
        learned = advice.attrs["basis"] == "learned"
        out.append(f'<h3 id="advice-{escape(name)}">target {escape(name)}</h3>')
        out.append(
            f"<p class='meta'>Newest advice: <code>{escape(method)}</code> (run <code>{_fmt(stored.run_id)[:12]}"
            f"</code>, stored {_fmt(stored.created_at)}); every row: <code>Results(workspace).recommend_sources("
            f"{escape(repr(name))}, method={escape(repr(method))})</code>.</p>"
        )
        if advice.attrs["dont_transfer"]:
            out.append(
                f"<p><strong>Don't transfer:</strong> no source is expected to help {escape(name)}; even the best "
                f"source's interval lies below zero gain. Fine-tune on {escape(name)} alone.</p>"
            )
        level = advice.attrs["level"]
        interval = f"{100 * level:g}% interval" if level is not None else "interval"
        if learned:
            out.append(
                f"<p class='meta'>Learned ({escape(str(advice.attrs['learner']))}) from measured transfer on "
                f"{advice.attrs['training_targets']} other targets; expected gain over fine-tuning on the target "
                f"alone, in points, with a {interval} (CV+ over targets: it should hold a new target's mean gain "
                "over several seeds that often; a single fine-tune varies more, so one verification run may fall "
                "outside; unbounded where too few targets back the level).</p>"
            )
        else:
            out.append(
                _note(
                    f"No model: the advisor had {advice.attrs['training_targets']} measured targets to learn from "
                    "(it needs 3). Its order is the fused rank of its input methods; no gain estimates. Measure "
                    "transfer on a few targets (`transferscope measure`) or use the shipped atlas."
                )
            )
        headers = ["#", "source", "expected gain", interval, "measured gain", "why (top features, points)"]
        rows = [
            [
                f'<td class="num">{int(r["rank"])}</td>',
                _fmt(r["source"]),
                f'<td class="num">{_fmt(r["expected_gain"], 1)}</td>',
                f'<td class="num">{bound(r["lower"])} to {bound(r["upper"])}</td>' if learned else "—",
                f'<td class="num">{_fmt(r["measured_gain"], 1)}</td>',
                escape(", ".join(f"{k} {v:+.2f}" for k, v in r["top_features"].items())),
            ]
            for _, r in advice.iterrows()
        ]
        out.append(_table(headers, rows, css_class="advice"))
    out.append(
        "<p class='meta'>Measured gain: only in <code>advisor+verify</code> advice, the sources <code>--verify</code> "
        "fine-tuned on the target (they rank first, by what they measured).</p>"
    )
    return "".join(out)


def verdict(target: Any) -> str:
    """A target's informativeness as the report prints it: yes or no for a grid; a pilot screen (baseline and three
    sources) says whether its baseline learns, its one condition before a grid."""
    if target.stage == "pilot":
        return "pilot: learns" if bool(target.passes) else "pilot: does not learn"
    return "yes" if pd.notna(target.informative) and bool(target.informative) else "no"


def bound(value: float) -> str:
    """An interval bound in points; an infinite one (too few targets for the level) as "unbounded"."""
    return "unbounded" if isinstance(value, float) and math.isinf(value) else _fmt(value, 1)


def latest_gains(ws: Workspace, target: str | None) -> pd.DataFrame:
    """Per target, its current measurement's gains (``current_measurements``; one row per target and source)."""
    frame = _read(ws, "report_latest_gains")
    return frame[frame.target == target] if target is not None else frame


def gains_section(gains: pd.DataFrame) -> str:
    """Section 2: the heatmap of measured gains."""
    out = ['<h2 id="gains">2. Measured transfer gains</h2>']
    if gains.empty:
        return "".join(out) + _note(
            "No measured transfer yet. Run `transferscope measure TARGET` to fine-tune each target alone and after "
            "each source."
        )
    rows, columns = sorted(gains.target.unique()), sorted(gains.source.unique())
    values, labels, tips = {}, {}, {}
    for g in gains.itertuples(index=False):
        key = (str(g.target), str(g.source))
        values[key] = float(g.mean_gain)
        labels[key] = f"{_points(g.mean_gain)} ± {g.std_gain * 100:.1f}"
        tips[key] = (
            f"{g.source} → {g.target}: {_points(g.mean_gain)} ± {g.std_gain * 100:.1f} points over {g.n_seeds} "
            f"seeds (target alone {g.baseline_mean:.3f}, after the source {g.source_mean:.3f})"
        )
    figure = heatmap(
        rows,
        columns,
        {k: v * 100 for k, v in values.items()},
        labels,
        title="Measured gain of fine-tuning on each source before each target (points over the target alone)",
        x_label="source task (fine-tuned on first)",
        y_label="target task",
        legend_label="mean gain (points)",
        tooltips=tips,
        id_prefix="gains",
    )
    out.append(
        f"<figure>{figure}<figcaption>Each cell: mean gain ± standard deviation over seeds, in points (×100 of the "
        "target's primary metric), of fine-tuning on the source before the target versus the target alone. Blue "
        "helps, red hurts, grey: not measured.</figcaption></figure>"
    )
    return "".join(out)


def rankings_section(ws: Workspace, gains: pd.DataFrame, target: str | None) -> str:
    """Section 3: each method's newest predicted ranking beside the measured one, per target."""
    out = ['<h2 id="rankings">3. Predicted versus measured rankings</h2>']
    scores = _read(ws, "report_latest_pair_scores")
    if target is not None:
        scores = scores[scores.target == target]
    targets = sorted(set(scores.target) | set(gains.target))
    if not targets:
        return "".join(out) + _note("No rankings stored yet. Run `transferscope rank TARGET`.")
    for name in targets:
        out.append(f'<h3 id="target-{escape(name)}">target {escape(name)}</h3>')
        measured = gains[gains.target == name].sort_values("mean_gain", ascending=False)
        measured_rank = {s: i + 1 for i, s in enumerate(measured.source)}
        mine = scores[scores.target == name]
        methods = list(dict.fromkeys(mine.method))
        if measured.empty:
            out.append(_note(f"No measured transfer for {name} yet: predictions only."))
        if not methods:
            out.append(_note(f"No rankings stored for {name} yet: measured order only."))
        order = {m: mine[mine.method == m].sort_values("rank", na_position="last") for m in methods}
        depth = max([len(measured)] + [len(o) for o in order.values()])
        headers = ["#"] + (["measured (gain, points)"] if not measured.empty else [])
        for m in methods:
            better = "higher" if bool(order[m].higher_is_better.iloc[0]) else "lower"
            headers.append(f"{m} (score; {better} is better)")
        rows = []
        for i in range(depth):
            row = [f'<td class="num">{i + 1}</td>']
            truth = measured.source.iloc[i] if i < len(measured) else None
            if not measured.empty:
                row.append(
                    f"{escape(str(truth))} <span class='sub'>{_points(measured.mean_gain.iloc[i])}</span>"
                    if truth is not None
                    else ""
                )
            for m in methods:
                ranked = order[m]
                if i >= len(ranked):
                    row.append("")
                    continue
                source = str(ranked.source.iloc[i])
                where = f" · measured #{measured_rank[source]}" if source in measured_rank else ""
                cell = f"{escape(source)} <span class='sub'>{_fmt(ranked.score.iloc[i], 4)}{where}</span>"
                row.append(f'<td class="hit">{cell}</td>' if source == truth else cell)
            rows.append(row)
        out.append(_table(headers, rows, css_class="ranking"))
        for method, groups in Results(ws).near_ties(name).items():
            for group in groups:
                out.append(
                    _note(
                        f"Near-tie: {', '.join(group)} are indistinguishable by {method} (scores within 0.5% of "
                        "their size): read their order as a tie."
                    )
                )
    out.append(
        "<p class='meta'>Green: the method put the measured source at the same position. Newest run per method.</p>"
    )
    return "".join(out)


def quality_section(ws: Workspace, target: str | None) -> str:
    """Section 4: how well each method's ranking predicted measured transfer."""
    out = ['<h2 id="quality">4. Ranking quality</h2>']
    try:
        quality = Results(ws).method_quality(target)
    except LookupError:
        return "".join(out) + _note(
            "No ranking-quality evaluation stored yet. Run `transferscope evaluate TARGET` after measuring transfer."
        )
    metrics = [c for c in QUALITY_ORDER if c in quality.columns]
    rows = [
        [_fmt(r["target"]), _fmt(r["method"])] + [f'<td class="num">{_fmt(r[m])}</td>' for m in metrics]
        for _, r in quality.iterrows()
    ]
    out.append(_table(["target", "method", *metrics], rows, css_class="quality"))
    out.append(
        f"<p class='meta'>{escape(LOSS_MEANING)} NDCG, Spearman, Kendall and top-1 hit: higher is better. "
        "<code>random</code> is the expectation "
        "over random orders, <code>source-prior</code> ranks sources by their mean gain on the other targets. Every "
        "metric: <code>Results(workspace).method_quality()</code>.</p>"
    )
    return "".join(out)


def task_centroids(ws: Workspace) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Train-split embedding centroids of every stored task with embeddings under the most common encoder
    configuration (model, pooling, max_length, normalize, precision; per task the largest cache entry, the whole split
    rather than a method's sample, newest among equals): (task names,
    matrix, configuration)."""
    configs = _read(ws, "report_embedding_configs")
    if configs.empty:
        return [], np.zeros((0, 0)), {}
    config = {k: configs.iloc[0][k] for k in ("model", "pooling", "max_length", "normalize", "precision")}
    config = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}
    means = _read(ws, "report_task_centroids", config)
    if means.empty:
        return [], np.zeros((0, 0)), config
    wide = means.pivot(index="task", columns="i", values="x").sort_index()
    return [str(t) for t in wide.index], wide.to_numpy(dtype=np.float64), config


def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``matrix`` projected on its first two principal components (numpy SVD), and the share of variance
    each explains; missing components (fewer than 3 rows) are zero."""
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    coords = np.zeros((matrix.shape[0], 2))
    k = min(2, vt.shape[0])
    coords[:, :k] = centred @ vt[:k].T
    total = float((singular**2).sum())
    shares = np.zeros(2)
    if total > 0:
        shares[:k] = singular[:k] ** 2 / total
    return coords, shares


def map_section(ws: Workspace) -> str:
    """Section 5: the PCA map of task centroids."""
    out = ['<h2 id="map">5. Map of tasks</h2>']
    names, matrix, config = task_centroids(ws)
    if not names:
        return "".join(out) + _note("No train-split embeddings stored yet. Run `transferscope embed`.")
    coords, shares = pca_2d(matrix)
    figure = scatter(
        [(n, float(x), float(y)) for n, (x, y) in zip(names, coords, strict=True)],
        title="Tasks by the mean embedding of their train split (first two principal components)",
        x_label=f"PC1 ({shares[0] * 100:.0f}% of variance)",
        y_label=f"PC2 ({shares[1] * 100:.0f}% of variance)",
        point_class="task-point",
    )
    described = ", ".join(f"{k} {v}" for k, v in config.items())
    out.append(
        f"<figure>{figure}<figcaption>One point per task: the mean embedding of its train split, projected on the "
        f"first two principal components of the {len(names)} centroids. Encoder configuration: "
        f"{escape(described)}. Nearby tasks have similar inputs.</figcaption></figure>"
    )
    return "".join(out)


def selections_section(ws: Workspace, views: set[str]) -> str:
    """Section 6: the stored training subsets (newest first) and how many per-example scores back them."""
    out = ['<h2 id="selections">6. Data selection</h2>']
    if "selections" not in views:
        return "".join(out) + _note("No selections stored.")
    stored = _read(ws, "report_selections")
    if stored.empty:
        return "".join(out) + _note("No selections stored.")
    headers = ["subset", "pool", "targets", "method", "budget", "selected", "share of pool", "scores", "created"]
    rows = []
    for r in stored.itertuples(index=False):
        budget = "method's own stop" if r.budget_kind == "method" else _fmt(r.budget, 2) + f" ({r.budget_kind})"
        rows.append(
            [
                f"<code>{escape(r.subset_id)}</code>",
                _fmt(r.pool),
                _fmt(", ".join(r.targets)),
                _fmt(r.method),
                budget,
                f"{r.n_selected} / {r.n_pool}",
                f"{r.n_selected / r.n_pool:.1%}",
                str(r.n_scores),
                _fmt(r.created_at),
            ]
        )
    out.append(_table(headers, rows, css_class="selections"))
    out.append(
        _note(
            "Read a subset with Results.stored_subset(pool, targets, method, budget); export it with "
            "`transferscope select ... --out FILE`."
        )
    )
    return "".join(out)


def selection_curves(summary: pd.DataFrame) -> str:
    """The share-of-full-pool curves of a `selection.quality.summarise_selection` frame: one line per arm over the
    budgets (mean over targets, ±1 std over seeds), in percent, with the full pool as a dashed line at 100."""
    overall = summary[(summary.target == "all") & (summary.arm != "full")]
    series = {
        str(arm): [(float(r.budget), 100 * float(r.share_mean), 100 * float(r.share_std)) for r in rows.itertuples()]
        for arm, rows in overall.groupby("arm")
    }
    return line_chart(
        series,
        title="Share of the full-pool score reached by each selection method's subsets, per budget",
        x_label="budget (share of the pool)",
        y_label="% of the full-pool score",
        reference=100.0,
    )


def recommend_curves(curves: pd.DataFrame) -> str:
    """Regret@1 against the mean target fine-tunes spent, one line per policy (`bench.recommend_simulation`), on the
    informative targets (all targets when none is informative), real scenario; ±1 standard error."""
    group = "informative" if (curves.group == "informative").any() else "all"
    real = curves[(curves.group == group) & (curves.scenario == "real")]
    series = {
        str(policy): [
            (float(r.runs), float(r.regret), float(r.regret_se)) for r in rows.sort_values("runs").itertuples()
        ]
        for policy, rows in real.groupby("policy")
    }
    return line_chart(
        series,
        title=f"recommend on the atlas's seeds ({group} targets): regret@1 against target fine-tunes spent",
        x_label="target fine-tunes spent (mean)",
        y_label="regret@1, % of the best performance",
    )


def selection_quality_section(ws: Workspace, views: set[str]) -> str:
    """Section 7: per budget, the share of the full-pool score each arm's subsets reach (mean over targets, ±1
    std over seeds), as curves and as a table with the paired difference to random."""
    out = ['<h2 id="selection-quality">7. Selection quality</h2>']
    try:
        summary = Results(ws).selection_quality() if "selection_results" in views else None
    except LookupError:
        summary = None
    if summary is None:
        no_measurement = _note(
            "No selection-quality measurement stored. Run `transferscope measure-selection POOL --target T` to "
            "fine-tune on each method's subsets and on the whole pool."
        )
        return "".join(out) + no_measurement + held_out_selection()
    overall = summary[summary.target == "all"]
    targets = sorted(set(summary.target) - {"all"})
    out.append(
        "<figure>"
        + selection_curves(summary)
        + f"<figcaption>Pool <code>{escape(summary.attrs['pool'])}</code>, targets {escape(', '.join(targets))}: "
        "the target metric after fine-tuning on each method's subset, as a percentage of fine-tuning on the whole "
        "pool (dashed line), averaged over the targets; bars are ±1 standard deviation over seeds.</figcaption>"
        "</figure>"
    )
    rows = [
        [
            _fmt(r.arm),
            f"{r.budget:.0%}",
            f"{r.n_train:.0f}",
            f"{100 * r.share_mean:.1f} ± {100 * r.share_std:.1f}",
            f"{r.score_mean:.3f}",
            "—"
            if not math.isfinite(r.vs_random_mean)
            else f"{100 * r.vs_random_mean:+.1f} ± {100 * r.vs_random_std:.1f}",
            _fmt(r.vs_random_p_value, 3),
            str(r.n_seeds),
        ]
        for r in overall.sort_values(["budget", "share_mean"], ascending=[True, False]).itertuples()
    ]
    headers = ["arm", "budget", "examples", "% of full", "score", "vs random (points)", "p (paired t)", "seeds"]
    out.append(_table(headers, rows, css_class="selection-quality"))
    out.append(
        _note(f"Per-target rows: Results(workspace).selection_quality(); config {summary.attrs['config_hash'][:12]}.")
    )
    return "".join(out) + held_out_selection()


def held_out_selection(folder: Path = SHIPPED_ATLAS) -> str:
    """Section 7's held-out pools (`store.benchmarks.committed_selection_generalisation`): per pool and budget, each
    method's paired difference to random in points with its 95% interval over seeds, marked where the interval lies
    above 0; labelled partial while the grid is incomplete."""
    out = ["<h3>Held-out pools: where a method beats random</h3>"]
    found = committed_selection_generalisation(folder)
    if found is None:
        return "".join(out) + _note(
            "Not measured yet: `python -m bench selection_generalisation` (a campaign that resumes where it stopped)."
        )
    table, meta = found
    coverage = (
        f"all {meta['planned_seeds']} seeds"
        if meta["complete"]
        else "PARTIAL: " + ", ".join(f"{p} {len(s)} of {meta['planned_seeds']} seeds" for p, s in meta["seeds"].items())
    )
    out.append(
        "<p class='meta'>Pools the methods were not tuned on (<code>python -m bench selection_generalisation</code>; "
        f"{escape(coverage)}): the difference to random subsets of the same size in accuracy points, mean over seeds "
        "(targets averaged per seed) [95% paired t-interval]; ✓ where the whole interval is above 0.</p>"
    )
    arms = sorted(set(table.arm) - {"full", "random"})
    rows = []
    for (pool, budget), group in table[table.budget < 1].groupby(["pool", "budget"], sort=False):
        by_arm = group.set_index("arm")
        cells = [
            f'<td class="num">{by_arm.vs_random_points[a]:+.1f} [{_fmt(by_arm.ci95_low[a], 1)}, '
            f"{_fmt(by_arm.ci95_high[a], 1)}]{' ✓' if by_arm.beats_random[a] else ''}</td>"
            if a in by_arm.index
            else "—"
            for a in arms
        ]
        rows.append([_fmt(pool), f"{budget:.0%}", *cells])
    out.append(_table(["pool", "budget", *arms], rows, css_class="selection-generalisation"))
    return "".join(out)


def reference_section() -> str:
    """Section 8: the committed benchmark results shipped with the package, the reference for this workspace's
    numbers: the transfer atlas per target, ranking quality per method, selection quality per method and budget,
    and ``recommend``'s procedure replayed on the atlas."""
    out = ['<h2 id="reference">8. Reference: the committed benchmarks</h2>']
    atlas = atlas_summary()
    if atlas is None or atlas.empty:
        out.append(_note("No transfer atlas is shipped with this installation."))
    else:
        out.append(
            f"<h3>Transfer atlas: {int(atlas.runs.sum())} measured fine-tunes over {len(atlas)} targets</h3>"
            "<p class='meta'>Per target: the best source's mean gain over fine-tuning on the target alone, the "
            "mean over its sources and the share of sources that help (points; <code>python -m bench "
            "transfer_atlas</code>), and whether the target can judge a ranking (<code>python -m bench "
            "atlas_targets</code>): the baseline's skill over chance, (score − chance) / (1 − chance), must reach 0.1, "
            "and sources must differ beyond seed noise (block ANOVA p &lt; 0.05); reliability is the split-half "
            "Spearman–Brown reliability of the 5-seed mean ranking, the ceiling for any method.</p>"
        )
        tested = "informative" in atlas
        rows = [
            [
                _fmt(r.target),
                f'<td class="num">{r.runs}</td>',
                f'<td class="num">{r.sources}</td>',
                _fmt(r.best_source),
                f'<td class="num">{r.best_gain:+.1f}</td>',
                f'<td class="num">{r.mean_gain:+.1f}</td>',
                f'<td class="num">{r.helps:.0%}</td>',
            ]
            + (
                [
                    f'<td class="num">{_fmt(r.skill, 2)}</td>',
                    f'<td class="num">{_fmt(r.anova_p, 3)}</td>',
                    f'<td class="num">{_fmt(r.reliability, 2)}</td>',
                    verdict(r),
                ]
                if tested
                else []
            )
            for r in atlas.itertuples()
        ]
        headers = ["target", "runs", "sources", "best source", "its gain", "mean gain", "sources that help"]
        headers += ["baseline skill", "ANOVA p", "reliability", "informative"] if tested else []
        out.append(_table(headers, rows, css_class="atlas"))
    ranking = committed_ranking_quality()
    if ranking is not None and len(ranking[0]) and "ndcg@5_mean" in ranking[0]:
        table, meta = ranking
        coverage = "complete atlas" if meta["complete"] else f"the {len(meta['targets'] or [])} complete atlas targets"
        informative = meta["table_informative"]
        shown = [m for m in ("regret@1", "points_lost@1", "ndcg@5", "spearman") if f"{m}_mean" in table]
        labels = {"ndcg@5": "NDCG@5", "spearman": "Spearman"}
        tables = [(f"the {len(meta['informative_targets'] or [])} informative atlas targets", informative)]
        for title, frame in [*(tables if len(informative) else []), (coverage, table)]:
            out.append(
                f"<h3>Ranking quality on {escape(title)}</h3><p class='meta'>Mean ± std over targets; Δ NDCG@5: the "
                "paired difference to the best single method ± the half-width of its 95% interval over targets. "
                f"{escape(LOSS_MEANING)} NDCG@5 and Spearman: higher is better (<code>python -m bench "
                "ranking_quality</code>).</p>"
            )
            rows = [
                [_fmt(r["method"])]
                + [f'<td class="num">{_fmt(r[f"{m}_mean"], 2)} ± {_fmt(r.get(f"{m}_std"), 2)}</td>' for m in shown]
                + [
                    f'<td class="num">{_fmt(r.get("ndcg@5_minus_best_mean"), 2)} ± '
                    f"{_fmt(r.get('ndcg@5_minus_best_ci95'), 2)}</td>"
                ]
                for r in frame.to_dict("records")
            ]
            headers = ["method", *(labels.get(m, m) for m in shown), "Δ NDCG@5"]
            out.append(_table(headers, rows, css_class="reference-quality"))
    selection = committed_selection_quality()
    if selection is not None:
        out.append(
            "<h3>Selection quality</h3><p class='meta'>Share of the full-pool score a subset reaches (%, mean ± std "
            "over seeds) and its paired difference to random subsets of the same size (points; <code>python -m "
            "bench selection_quality</code>).</p>"
        )
        rows = [
            [
                _fmt(r.arm),
                f"{r.budget:.0%}",
                f'<td class="num">{100 * r.share_mean:.1f} ± {100 * r.share_std:.1f}</td>',
                f'<td class="num">{_points(r.vs_random_mean) if pd.notna(r.vs_random_mean) else "—"}</td>',
            ]
            for r in selection.itertuples()
        ]
        out.append(
            _table(["method", "budget", "share of full pool", "vs random"], rows, css_class="reference-selection")
        )
    simulated = committed_recommend_simulation()
    if simulated is not None and len(simulated):
        out.append(
            "<h3>Recommending by measurement, replayed on the atlas</h3><p class='meta'>Each policy answers which "
            "source to fine-tune on first, pulling target fine-tunes from the atlas's own seeds (2 of 5 seeds per "
            "arm held out as the truth; priors leave-one-target-out; <code>python -m bench recommend_simulation"
            "</code>): regret@1 (% of the best performance) and points lost, mean over targets and truth splits, on "
            "the informative targets and on all. Budget −1: every held-in seed; the one-seed oracle measures every "
            "arm once.</p><figure>" + recommend_curves(simulated) + "</figure>"
        )
        real = simulated[simulated.scenario == "real"]
        rows = [
            [
                _fmt(r.policy),
                f'<td class="num">{r.budget}</td>'
                if r.budget >= 0
                else "every seed"
                if r.budget == -1
                else "each once",
                f'<td class="num">{r.runs:.1f}</td>',
                f'<td class="num">{r.regret:.1f}</td>',
                f'<td class="num">{r.points_lost:.1f}</td>',
                _fmt(r.group),
            ]
            for r in real.sort_values(["group", "policy", "budget"]).itertuples()
        ]
        headers = ["policy", "budget", "fine-tunes", "regret@1 %", "points lost", "targets"]
        out.append(_table(headers, rows, css_class="reference-recommend"))
    return "".join(out)


def runs_section(ws: Workspace) -> str:
    """Section 9: metadata of the most recent runs."""
    out = ['<h2 id="runs">9. Recent runs</h2>']
    runs = _read(ws, "report_recent_runs", {"limit": RECENT_RUNS})
    if runs.empty:
        return "".join(out) + _note("No runs recorded yet.")
    rows = []
    for r in runs.itertuples(index=False):
        params, versions, timings = _json(r.params_json), _json(r.versions_json), _json(r.timings_json)
        model = params.get("model") or params.get("base_model") or "—"
        duration = (
            f"{(r.finished_at - r.started_at).total_seconds():.1f} s"
            if isinstance(r.finished_at, pd.Timestamp) and isinstance(r.started_at, pd.Timestamp)
            else "—"
        )
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if isinstance(v, (int, float)))
        status = _fmt(r.status) + (f"<br><span class='sub'>{_fmt(r.error)}</span>" if r.error else "")
        rows.append(
            [
                _fmt(r.started_at),
                _fmt(r.flow),
                _fmt(model),
                f"<code>{_fmt(r.config_hash)[:12]}</code>",
                _fmt(r.device),
                status,
                f"{duration}<br><span class='sub'>{escape(steps)}</span>" if steps else duration,
                "<span class='sub'>" + escape(", ".join(f"{k} {v}" for k, v in versions.items())) + "</span>",
                f"<code>{_fmt(r.run_id)[:12]}</code>",
            ]
        )
    headers = ["started", "flow", "model", "config", "device", "status", "timings", "library versions", "run"]
    out.append(_table(headers, rows, css_class="runs"))
    return "".join(out)


# ------------------------------------------------------------------------------------------------ the page


def render(ws: Workspace, target: str | None = None) -> str:
    """The report page's HTML for ``ws`` (restricted to one ``target`` where a section is per target)."""
    views = set(_read(ws, "report_view_names").table_name)
    counts = _read(ws, "report_counts").iloc[0]
    title = "TransferScope report" + (f": {target}" if target else "")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"<h1>{escape(title)}</h1><p class='meta'>Workspace <code>{escape(str(ws.root))}</code> · "
        f"{int(counts.tasks)} tasks · {int(counts.runs)} runs · generated {when} from the store (nothing "
        "recomputed)</p>"
    )
    if int(counts.tasks) == 0 and int(counts.runs) == 0 and int(counts.results) == 0:
        body = _note(
            "This workspace is empty: no tasks and no runs are stored yet. Add tasks with `transferscope tasks add "
            "NAME PATH` (or run `transferscope demo`), then build the report again."
        )
    else:
        if target is not None:
            known = set(_read(ws, "report_known_targets").name)
            if target not in known:
                raise MissingResultError(f"No task {target!r} in workspace '{ws.root}'; stored tasks: {sorted(known)}.")
        gains = latest_gains(ws, target)
        nav = "".join(
            f'<a href="#{a}">{escape(t)}</a>'
            for a, t in (
                ("advice", "advice"),
                ("gains", "gains"),
                ("rankings", "rankings"),
                ("quality", "quality"),
                ("map", "task map"),
                ("selections", "selections"),
                ("selection-quality", "selection quality"),
                ("reference", "reference"),
                ("runs", "runs"),
            )
        )
        body = (
            f"<nav>{nav}</nav>"
            + advice_section(ws, target)
            + gains_section(gains)
            + rankings_section(ws, gains, target)
            + quality_section(ws, target)
            + map_section(ws)
            + selections_section(ws, views)
            + selection_quality_section(ws, views)
            + reference_section()
            + runs_section(ws)
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>{head}{body}</main></body></html>\n"
    )


def build_report(
    workspace: str | os.PathLike[str] | Workspace | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    target: str | None = None,
) -> Path:
    """Write the report to ``out_dir/index.html`` (default ``<workspace>/report/``) atomically; returns its path.
    ``target`` restricts the per-target sections to one stored task (unknown: `LookupError`)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    folder = Path(out_dir) if out_dir is not None else ws.root / "report"
    folder.mkdir(parents=True, exist_ok=True)
    page = render(ws, target)
    index = folder / "index.html"
    with replace_atomically(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index.resolve()
