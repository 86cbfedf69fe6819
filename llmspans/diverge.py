"""``llmspans diverge``: where the evaluation set stops predicting production.

Per pipeline, segment and metric, the runs of one source (``offline``, or
``shadow`` with ``--shadow``) are compared with the ``production`` runs: each side's
value, the difference (production minus the other side), a confidence interval of
the difference and a verdict. A difference is flagged only when its interval
excludes zero at ``--confidence`` and both sides have at least ``--min-runs`` runs.

Tests (docs/divergence.md says why):

- rates (task completion, root-cause failure rate per stage): Newcombe's hybrid
  score interval of a difference of two proportions (method 10, built from Wilson
  intervals), which behaves at rates near 0 and 1 where the Wald interval does not;
- means of per-run values in [0, 1] (context precision, context recall, citation
  precision per generation): Welch's t interval, exact running sums;
- ECE, cost per success and p95 duration: percentile bootstrap of the difference
  over runs, with a fixed seed, over a reservoir sample of at most
  :data:`RESERVOIR` runs per side (the interval of a larger side is a little wider
  than it needs to be, never narrower).

With ``--prometheus URL`` the same rows come from instant queries over
``--window``: rates from counter increases (the same test), means from histogram
sums and counts with the variance estimated from bucket midpoints, p95 from bucket
estimates and ECE and cost per success as values only (no run-level data: verdict
``approximate``).

Segment coverage (``metric`` = ``coverage``): each segment's share of production
runs against its share of the offline runs, segments production serves that the
offline set lacks first.

Hostile input is bounded: files are streamed (a trace is evaluated once its root
ended and :data:`_IDLE_RECORDS` spans passed without one of it), pipelines and
segments are bounded as in the collector (``--max-segments`` per pipeline, the
rest ``other``), and bootstrap samples are reservoirs of fixed size.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from llmspans import _attributes as A
from llmspans._argtypes import open_unit, positive_int
from llmspans._tracefiles import (
    MAX_LINE_BYTES,
    Unreadable,
    iter_otlp_json_lines,
    open_trace_lines,
)
from llmspans.core.engine import Assembler, Engine
from llmspans.core.metrics import Labeler, observations
from llmspans.core.model import Thresholds, TraceResult

__all__ = [
    "EXIT_STATUS",
    "Row",
    "Side",
    "add_arguments",
    "compare",
    "coverage",
    "read_sides",
    "run",
]

EXIT_STATUS: Final = """exit status:
  0  the report was printed and no difference is significant
  1  the report was printed and at least one difference is significant, or a
     segment production serves is missing from the other side
  2  wrong arguments, or an input cannot be read (missing file, no readable line,
     Prometheus unreachable or answering with an error)"""

#: Runs kept per (pipeline, segment, source) for the bootstrap metrics.
RESERVOIR: Final = 2000
#: Bootstrap resamples.
BOOTSTRAP: Final = 400
_SEED: Final = 20240601
#: Spans after which a trace with an ended root is evaluated (streaming bound).
_IDLE_RECORDS: Final = 50_000
_DUE_EVERY: Final = 1000

Key = tuple[str, str]  # pipeline, segment


@dataclass
class Side:
    """What one source's runs of one pipeline and segment add up to.

    Counts and sums are exact; the per-run tuples for the bootstrap are a reservoir
    sample of at most :data:`RESERVOIR` runs.
    """

    runs: int = 0
    successes: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    #: metric -> (n, sum, sum of squares)
    means: dict[str, list[float]] = field(default_factory=dict)
    #: (duration s, cost USD, success, confidence or None, correct)
    sample: list[tuple[float, float, bool, float | None, bool]] = field(default_factory=list)
    #: from Prometheus: values without run-level data (p95, ece, cost per success)
    values: dict[str, float] = field(default_factory=dict)

    def add_mean(self, metric: str, value: float) -> None:
        acc = self.means.setdefault(metric, [0.0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += value
        acc[2] += value * value


Sides = dict[str, dict[Key, Side]]  # source -> (pipeline, segment) -> side

_MEAN_METRICS: Final = {
    A.METRIC_CONTEXT_PRECISION: "context_precision",
    A.METRIC_CONTEXT_RECALL: "context_recall",
    A.METRIC_CITATION_PRECISION: "citation_precision",
}


class _Sampler:
    """Seeded reservoir sampling (algorithm R), one stream per side."""

    def __init__(self) -> None:
        self._random = random.Random(_SEED)

    def add(self, side: Side, item: tuple[float, float, bool, float | None, bool]) -> None:
        if len(side.sample) < RESERVOIR:
            side.sample.append(item)
            return
        slot = self._random.randrange(side.runs)
        if slot < RESERVOIR:
            side.sample[slot] = item


def _add_result(result: TraceResult, labeler: Labeler, sides: Sides, sampler: _Sampler) -> None:
    for run, verdict in result.runs:
        found = observations(TraceResult(runs=[(run, verdict)]), labeler)
        labels = dict(labeler.run(labeler.pipeline(run.pipeline), run.root))
        key = (labels["pipeline"], labels["segment"])
        side = sides.setdefault(labels["source"], {}).setdefault(key, Side())
        side.runs += 1
        success = verdict.outcome == A.OUTCOME_SUCCESS
        side.successes += success
        if verdict.outcome == A.OUTCOME_FAILURE:
            stage = verdict.failure_stage or A.STAGE_UNATTRIBUTED
            side.failures[stage] = side.failures.get(stage, 0) + 1
        duration = cost = 0.0
        confidence: float | None = None
        correct = False
        for observation in found:
            name = observation.instrument
            if name == A.METRIC_TASK_DURATION:
                duration = observation.value
            elif name == A.METRIC_TASK_COST:
                cost = observation.value
            elif name in _MEAN_METRICS:
                side.add_mean(_MEAN_METRICS[name], observation.value)
            elif name == A.METRIC_CALIBRATION_CONFIDENCE:
                confidence = observation.value
            elif name == A.METRIC_CALIBRATION_RUNS:
                correct = dict(observation.labels).get("correct") == "true"
        sampler.add(side, (duration, cost, success, confidence, correct))


def read_sides(
    files: Iterable[tuple[str, Iterable[str]]],
    *,
    max_segments: int = 20,
    max_pipelines: int = 50,
    on_error: Callable[[str, int, str], None] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Sides:
    """Stream OTLP JSON lines files into per-source sides.

    ``files`` pairs a name (for errors) with its lines. A run's source is its own
    ``llmspans.run.source`` attribute, whichever file it came from: a file given
    as ``--offline`` that holds production runs adds to production.
    """
    labeler = Labeler(max_pipelines=max_pipelines, max_segments=max_segments)
    sides: Sides = {}
    sampler = _Sampler()
    for name, lines in files:
        engine = Engine(
            Thresholds(),
            assembler=Assembler(trace_idle_s=_IDLE_RECORDS, trace_timeout_s=math.inf),
        )
        assembler = engine.assembler

        def skipped(line: int, error: str, name: str = name) -> None:
            if on_error is not None:
                on_error(name, line, error)

        def evaluate(done: Iterable[tuple[Any, Any]], engine: Engine = engine) -> None:
            for trace, _ in done:
                result = engine.attribute(trace)
                if result is not None:
                    _add_result(result, labeler, sides, sampler)

        records = iter_otlp_json_lines(lines, skipped, max_line_bytes)
        for count, record in enumerate(records, 1):
            assembler.add(record, float(count))
            if count % _DUE_EVERY == 0:
                evaluate(assembler.due(float(count)))
        evaluate(assembler.drain())
    return sides


# --- statistics --------------------------------------------------------------------


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe(x1: float, n1: float, x2: float, n2: float, confidence: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p2 - p1 (method 10)."""
    z = _z(confidence)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p2 - p1
    lower = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    upper = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return (lower, upper)


def t_quantile(p: float, df: float) -> float:
    """Student t quantile by the Cornish-Fisher expansion around the normal one
    (error below 1e-3 from 3 degrees of freedom up)."""
    z = statistics.NormalDist().inv_cdf(p)
    if math.isinf(df) or df > 1e7:
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def welch(a: Sequence[float], b: Sequence[float], confidence: float) -> tuple[float, float] | None:
    """Welch's t interval of mean(b) - mean(a); ``a`` and ``b`` are (n, sum, sumsq)."""
    n1, s1, q1 = a
    n2, s2, q2 = b
    if n1 < 2 or n2 < 2:
        return None
    m1, m2 = s1 / n1, s2 / n2
    v1 = max(q1 - n1 * m1 * m1, 0.0) / (n1 - 1)
    v2 = max(q2 - n2 * m2 * m2, 0.0) / (n2 - 1)
    se2 = v1 / n1 + v2 / n2
    d = m2 - m1
    if se2 <= 0:
        return (d, d)
    df = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    half = t_quantile(0.5 + confidence / 2, max(df, 1.0)) * math.sqrt(se2)
    return (d - half, d + half)


Run = tuple[float, float, bool, float | None, bool]


def _p95(runs: Sequence[Run]) -> float | None:
    if not runs:
        return None
    values = sorted(run[0] for run in runs)
    rank = 0.95 * (len(values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def _ece(runs: Sequence[Run]) -> float | None:
    bins: dict[int, list[float]] = {}
    total = 0
    for _, _, _, confidence, correct in runs:
        if confidence is None:
            continue
        acc = bins.setdefault(min(int(confidence * 10), 9), [0.0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += correct
        acc[2] += confidence
        total += 1
    if total == 0:
        return None
    return sum(abs(c - s) for _, c, s in bins.values()) / total


def _cost_per_success(runs: Sequence[Run]) -> float | None:
    successes = sum(1 for run in runs if run[2])
    if successes == 0:
        return None
    return math.fsum(run[1] for run in runs) / successes


_BOOTSTRAPPED: Final[dict[str, Callable[[Sequence[Run]], float | None]]] = {
    "ece": _ece,
    "cost_per_success": _cost_per_success,
    "p95_duration_seconds": _p95,
}


def bootstrap(
    a: Sequence[Run],
    b: Sequence[Run],
    statistic: Callable[[Sequence[Run]], float | None],
    confidence: float,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of statistic(b) - statistic(a), fixed seed."""
    rng = random.Random(_SEED)
    differences = []
    for _ in range(BOOTSTRAP):
        va = statistic(rng.choices(a, k=len(a)))
        vb = statistic(rng.choices(b, k=len(b)))
        if va is not None and vb is not None:
            differences.append(vb - va)
    if len(differences) < BOOTSTRAP // 2:
        return None
    differences.sort()
    alpha = (1 - confidence) / 2
    low = differences[int(alpha * (len(differences) - 1))]
    high = differences[math.ceil((1 - alpha) * (len(differences) - 1))]
    return (low, high)


# --- rows ----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the report."""

    comparison: str  # "offline" or "shadow": the side compared with production
    pipeline: str
    segment: str
    metric: str
    offline: float | None
    production: float | None
    offline_runs: int
    production_runs: int
    interval: tuple[float, float] | None = None
    test: str = ""
    verdict: str = ""
    uncovered: bool = False

    @property
    def difference(self) -> float | None:
        if self.offline is None or self.production is None:
            return None
        return self.production - self.offline

    @property
    def significant(self) -> bool:
        return self.verdict in ("diverges", "uncovered")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pipeline": self.pipeline,
            "segment": self.segment,
            "metric": self.metric,
            "offline": self.offline,
            "production": self.production,
            "difference": self.difference,
            "significant": self.significant,
            "comparison": self.comparison,
            "interval": list(self.interval) if self.interval else None,
            "test": self.test,
            "verdict": self.verdict,
            "offline_runs": self.offline_runs,
            "production_runs": self.production_runs,
        }
        if self.metric == "coverage":
            out["uncovered"] = self.uncovered
        return out


def _verdict(row: Row, min_runs: int) -> None:
    if row.offline is None or row.production is None:
        row.verdict = "no data"
    elif row.offline_runs < min_runs or row.production_runs < min_runs:
        row.verdict = "too few runs"
    elif row.interval is None:
        row.verdict = "approximate"
    elif row.interval[0] > 0 or row.interval[1] < 0:
        row.verdict = "diverges"
    else:
        row.verdict = "consistent"


def _mean(acc: list[float] | None) -> float | None:
    return None if not acc or acc[0] == 0 else acc[1] / acc[0]


def compare(
    other: dict[Key, Side],
    production: dict[Key, Side],
    *,
    comparison: str = "offline",
    confidence: float = 0.95,
    min_runs: int = 30,
) -> list[Row]:
    """Rows for every pipeline and segment the two sides share, every metric."""
    rows: list[Row] = []
    for key in sorted(set(other) & set(production)):
        a, b = other[key], production[key]

        def row(
            metric: str, va: float | None, vb: float | None, na: int, nb: int, *, key: Key = key
        ) -> Row:
            found = Row(comparison, key[0], key[1], metric, va, vb, na, nb)
            rows.append(found)
            return found

        enough = a.runs >= min_runs and b.runs >= min_runs
        r = row(
            "task_completion",
            a.successes / a.runs if a.runs else None,
            b.successes / b.runs if b.runs else None,
            a.runs,
            b.runs,
        )
        r.test = "newcombe"
        if a.runs and b.runs:
            r.interval = newcombe(a.successes, a.runs, b.successes, b.runs, confidence)
        for stage in sorted(set(a.failures) | set(b.failures)):
            fa, fb = a.failures.get(stage, 0), b.failures.get(stage, 0)
            r = row(f"failure_rate:{stage}", fa / a.runs, fb / b.runs, a.runs, b.runs)
            r.test = "newcombe"
            r.interval = newcombe(fa, a.runs, fb, b.runs, confidence)
        for metric in ("context_precision", "context_recall", "citation_precision"):
            ma, mb = a.means.get(metric), b.means.get(metric)
            if ma is None and mb is None:
                continue
            r = row(metric, _mean(ma), _mean(mb), int(ma[0]) if ma else 0, int(mb[0]) if mb else 0)
            r.test = "welch"
            if ma is not None and mb is not None:
                r.interval = welch(ma, mb, confidence)
        for metric, statistic in _BOOTSTRAPPED.items():
            va = a.values.get(metric, statistic(a.sample) if a.sample else None)
            vb = b.values.get(metric, statistic(b.sample) if b.sample else None)
            if va is None and vb is None:
                continue
            r = row(metric, va, vb, a.runs, b.runs)
            if a.sample and b.sample and enough:
                r.test = "bootstrap"
                r.interval = bootstrap(a.sample, b.sample, statistic, confidence)
            elif a.values or b.values:
                r.test = "none (bucket or counter estimate)"
        for found in rows:
            if not found.verdict:
                _verdict(found, min_runs)
    return rows


def coverage(
    other: dict[Key, Side],
    production: dict[Key, Side],
    *,
    comparison: str = "offline",
    confidence: float = 0.95,
    min_runs: int = 30,
) -> list[Row]:
    """Each segment's share of its pipeline's production runs against its share of
    the other side's runs; segments production serves and the other side lacks
    first (largest production share first), then by the size of the difference."""
    totals_a: dict[str, int] = {}
    totals_b: dict[str, int] = {}
    for (pipeline, _), side in other.items():
        totals_a[pipeline] = totals_a.get(pipeline, 0) + side.runs
    for (pipeline, _), side in production.items():
        totals_b[pipeline] = totals_b.get(pipeline, 0) + side.runs
    rows = []
    for key in set(other) | set(production):
        pipeline, segment = key
        na, nb = totals_a.get(pipeline, 0), totals_b.get(pipeline, 0)
        xa = other[key].runs if key in other else 0
        xb = production[key].runs if key in production else 0
        r = Row(
            comparison,
            pipeline,
            segment,
            "coverage",
            xa / na if na else None,
            xb / nb if nb else None,
            xa,
            xb,
            test="newcombe",
        )
        if na and nb:
            r.interval = newcombe(xa, na, xb, nb, confidence)
        if xb > 0 and xa == 0 and na > 0:
            r.uncovered = True
            r.verdict = "uncovered"
        elif r.offline is None or r.production is None:
            r.verdict = "no data"
        elif na < min_runs or nb < min_runs:
            r.verdict = "too few runs"
        elif r.interval is not None and (r.interval[0] > 0 or r.interval[1] < 0):
            r.verdict = "diverges"
        else:
            r.verdict = "consistent"
        rows.append(r)
    rows.sort(key=lambda r: (not r.uncovered, -abs(r.difference or 0.0), r.pipeline, r.segment))
    return rows


# --- Prometheus ------------------------------------------------------------------

#: relevance from the app's labels, not from a judge (docs/evaluation.md)
_APP_LABELS: Final = '{basis="labels"}'
_SUCCESS: Final = 'llmspans_task_outcomes_total{outcome="success"}'
#: calibration over the app's own bases of correctness (labels, outcome): each run once
_CAL_RUNS: Final = 'llmspans_calibration_runs_total{basis!="judge"}'
_CORRECT_RUNS: Final = 'llmspans_calibration_runs_total{basis!="judge",correct="true"}'
_CAL_CONFIDENCE: Final = 'llmspans_calibration_confidence_total{basis!="judge"}'


def _query(url: str, expr: str, timeout: float) -> list[tuple[dict[str, str], float]]:
    address = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(address, timeout=timeout) as response:
        raw = response.read(_MAX_ANSWER_BYTES + 1)
    if len(raw) > _MAX_ANSWER_BYTES:
        raise ValueError(f"Prometheus answered more than {_MAX_ANSWER_BYTES} bytes to {expr!r}")
    try:
        body = json.loads(raw)
        if body.get("status") != "success":
            raise ValueError(f"Prometheus answered {str(body.get('error', body))[:200]}")
        found = []
        for sample in body["data"]["result"][:_MAX_ANSWER_SERIES]:
            value = float(sample["value"][1])
            if math.isfinite(value):
                found.append(({str(k): str(v) for k, v in sample["metric"].items()}, value))
    except (AttributeError, IndexError, KeyError, TypeError, RecursionError) as error:
        # valid JSON of another shape, or nested past the parser's depth
        raise ValueError(f"not a Prometheus query answer ({type(error).__name__})") from None
    return found


#: the largest Prometheus answer read, and the most series taken from one
_MAX_ANSWER_BYTES: Final = 8 << 20
_MAX_ANSWER_SERIES: Final = 10_000


def counted(selector: str, window: str) -> str:
    """What the counters of ``selector`` counted over ``window``, per series, in PromQL.

    ``increase()`` alone misses what a series held at its first scrape: an offline
    batch that creates its ``source="offline"`` series between two scrapes would
    count as nothing. So: the exact difference from ``window`` ago where the series
    existed then (and did not reset); the whole value of a series younger than the
    window (a counter starts at zero with the collector); ``increase()`` for a series
    that reset within the window.
    """
    return (
        f"(({selector} - {selector} offset {window}) >= 0)"
        f" or ({selector} unless {selector} offset {window})"
        f" or increase({selector}[{window}])"
    )


def read_prometheus(url: str, window: str, timeout: float = 30.0) -> Sides:
    """Sides from instant queries over ``window``: counts from counter increases
    (:func:`counted`), means from histogram sums and counts (variance from bucket
    midpoints). Relevance and correctness come from the app's own labels (``basis``
    other than ``judge``), as in the trace files; judged figures are not compared."""
    by = "pipeline, segment, source"
    sides: Sides = {}
    w = window

    def side(labels: dict[str, str]) -> Side:
        key = (labels.get("pipeline", ""), labels.get("segment", A.NO_SEGMENT))
        return sides.setdefault(labels.get("source", A.SOURCE_PRODUCTION), {}).setdefault(
            key, Side()
        )

    for labels, value in _query(
        url, f"sum by ({by}, outcome) ({counted('llmspans_task_outcomes_total', w)})", timeout
    ):
        s = side(labels)
        s.runs += round(value)
        if labels.get("outcome") == A.OUTCOME_SUCCESS:
            s.successes += round(value)
    for labels, value in _query(
        url, f"sum by ({by}, stage) ({counted('llmspans_stage_failures_total', w)})", timeout
    ):
        s = side(labels)
        stage = labels.get("stage", A.STAGE_UNATTRIBUTED)
        s.failures[stage] = s.failures.get(stage, 0) + round(value)
    for metric, name, selector in (
        ("llmspans_retrieval_context_precision", "context_precision", _APP_LABELS),
        ("llmspans_retrieval_context_recall", "context_recall", _APP_LABELS),
        ("llmspans_generation_citation_precision", "citation_precision", ""),
    ):
        buckets: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        for labels, value in _query(
            url, f"sum by ({by}, le) ({counted(metric + '_bucket' + selector, w)})", timeout
        ):
            group = (
                labels.get("pipeline", ""),
                labels.get("segment", ""),
                labels.get("source", ""),
            )
            buckets.setdefault(group, []).append((float(labels.get("le", "inf")), value))
        for (pipeline, segment, source), found in buckets.items():
            found.sort()
            acc = [0.0, 0.0, 0.0]
            previous_le, previous = 0.0, 0.0
            for le, cumulative in found:
                count = max(cumulative - previous, 0.0)
                mid = (previous_le + min(le, 1.0)) / 2
                acc[0] += count
                acc[1] += count * mid
                acc[2] += count * mid * mid
                previous_le, previous = min(le, 1.0), cumulative
            if acc[0] > 0:
                side({"pipeline": pipeline, "segment": segment, "source": source}).means[name] = acc
    for labels, value in _query(
        url,
        "histogram_quantile(0.95, sum by "
        f"({by}, le) ({counted('llmspans_task_duration_seconds_bucket', w)}))",
        timeout,
    ):
        side(labels).values["p95_duration_seconds"] = value
    for labels, value in _query(
        url,
        f"sum by ({by}) ({counted('llmspans_task_cost_usd_total', w)}) / (sum by ({by}) "
        f"({counted(_SUCCESS, w)}) > 0)",
        timeout,
    ):
        side(labels).values["cost_per_success"] = value
    for labels, value in _query(
        url,
        f"sum by ({by}) (abs((sum by ({by}, bin) ({counted(_CORRECT_RUNS, w)})"
        f" or 0 * sum by ({by}, bin) ({counted(_CAL_RUNS, w)}))"
        f" - sum by ({by}, bin) ({counted(_CAL_CONFIDENCE, w)})))"
        f" / (sum by ({by}) ({counted(_CAL_RUNS, w)}) > 0)",
        timeout,
    ):
        side(labels).values["ece"] = value
    return sides


# --- output -----------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def render(rows: Sequence[Row], coverage_rows: Sequence[Row]) -> str:
    lines = []
    header = (
        f"{'comparison':<10} {'pipeline':<16} {'segment':<20} {'metric':<26} "
        f"{'offline':>9} {'production':>10} {'difference':>10} {'interval':<22} verdict"
    )
    lines.append(header)
    for r in rows:
        interval = f"[{_fmt(r.interval[0])}, {_fmt(r.interval[1])}]" if r.interval else "-"
        lines.append(
            f"{r.comparison:<10} {r.pipeline[:16]:<16} {r.segment[:20]:<20} {r.metric[:26]:<26} "
            f"{_fmt(r.offline):>9} {_fmt(r.production):>10} {_fmt(r.difference):>10} "
            f"{interval:<22} {r.verdict}"
        )
    lines.append("")
    lines.append("segment coverage (share of the pipeline's runs; uncovered segments first)")
    lines.append(
        f"{'comparison':<10} {'pipeline':<16} {'segment':<20} {'offline':>9} "
        f"{'production':>10} {'difference':>10} verdict"
    )
    for r in coverage_rows:
        lines.append(
            f"{r.comparison:<10} {r.pipeline[:16]:<16} {r.segment[:20]:<20} "
            f"{_fmt(r.offline):>9} {_fmt(r.production):>10} {_fmt(r.difference):>10} {r.verdict}"
        )
    return "\n".join(lines) + "\n"


# --- command -----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Offline (or shadow) runs against production, per pipeline, segment and metric: "
        "values, difference, interval and a verdict, and segment coverage."
    )
    parser.epilog = EXIT_STATUS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    files = "OTLP JSON lines file of {} runs (.gz is unpacked)"
    parser.add_argument("--offline", help=files.format("offline"))
    parser.add_argument("--production", help=files.format("production"))
    parser.add_argument("--shadow", help=files.format("shadow"))
    parser.add_argument("--prometheus", help="Prometheus base URL, instead of files")
    parser.add_argument("--window", default="1h", help="window of the Prometheus queries")
    parser.add_argument("--confidence", type=open_unit, default=0.95)
    parser.add_argument(
        "--min-runs", type=positive_int, default=30, help="runs needed on each side (default 30)"
    )
    parser.add_argument(
        "--max-segments", type=positive_int, default=20, help="segments per pipeline (default 20)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--max-line-bytes",
        type=positive_int,
        default=MAX_LINE_BYTES,
        help="a longer line is reported and skipped without being held whole "
        f"(default: {MAX_LINE_BYTES}, 64 MiB)",
    )


def _lines(path: str, max_line_bytes: int) -> Iterator[str]:
    """The lines of one input (``.gz`` unpacked, ``-`` standard input), opened when
    first read; a gzip file cut short is read up to the break, with a warning."""

    def warn_break(message: str) -> None:
        print(f"llmspans diverge: warning: {path}: {message}", file=sys.stderr)

    with open_trace_lines(path, warn_break, max_line_bytes) as lines:
        yield from lines


def run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"llmspans diverge: {message}", file=sys.stderr)
        return 2

    if args.prometheus:
        if not all(c.isalnum() for c in args.window) or not args.window:
            return fail(f"not a Prometheus duration: {args.window!r}")
        try:
            sides = read_prometheus(args.prometheus, args.window)
        except (OSError, ValueError, KeyError, urllib.error.URLError) as error:
            return fail(f"cannot query {args.prometheus}: {error}")
    else:
        if not args.production or not (args.offline or args.shadow):
            return fail("give --production and --offline (or --shadow) files, or --prometheus")
        errors: list[str] = []

        def on_error(name: str, line: int, error: str) -> None:
            if len(errors) < 20:
                print(f"llmspans diverge: {name}: skipped line {line}: {error}", file=sys.stderr)
            errors.append(name)

        paths = (args.offline, args.production, args.shadow)
        files = [(p, _lines(p, args.max_line_bytes)) for p in paths if p]
        try:
            sides = read_sides(
                files,
                max_segments=args.max_segments,
                on_error=on_error,
                max_line_bytes=args.max_line_bytes,
            )
        except (OSError, Unreadable) as error:
            return fail(f"cannot read: {error}")
        if not sides:
            return fail("no pipeline runs in the input")
    production = sides.get(A.SOURCE_PRODUCTION, {})
    rows: list[Row] = []
    coverage_rows: list[Row] = []
    for comparison in (A.SOURCE_OFFLINE, A.SOURCE_SHADOW):
        other = sides.get(comparison)
        if not other:
            continue
        rows += compare(
            other,
            production,
            comparison=comparison,
            confidence=args.confidence,
            min_runs=args.min_runs,
        )
        coverage_rows += coverage(
            other,
            production,
            comparison=comparison,
            confidence=args.confidence,
            min_runs=args.min_runs,
        )
    out: TextIO = sys.stdout
    if args.format == "json":
        for r in coverage_rows + rows:
            out.write(json.dumps(r.to_json()) + "\n")
    else:
        out.write(render(rows, coverage_rows))
    return 1 if any(r.significant for r in (*rows, *coverage_rows)) else 0
