"""`edgetk compare`: Mann–Whitney U in numpy, and the CI gate on controlled latency distributions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.test_store import make_result
from toolkit.errors import ExitCode
from toolkit.report.compare import compare_rows, parse_threshold
from toolkit.report.data import rows_from_documents
from toolkit.report.stats import average_ranks, mann_whitney_greater
from toolkit.store import ResultStore

scipy_stats = pytest.importorskip("scipy.stats")


def test_average_ranks_share_ties():
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


@pytest.mark.parametrize(
    ("n_base", "n_new", "shift", "decimals"),
    [
        (5, 6, 0.5, None),
        (15, 12, 0.3, None),
        (20, 20, 1.0, None),
        (3, 17, 1.0, None),
        (60, 50, 0.1, None),
        (40, 40, 0.0, 1),
        (30, 25, 0.3, 1),
    ],
)
def test_mann_whitney_matches_scipy(n_base, n_new, shift, decimals):
    rng = np.random.default_rng(n_base * 100 + n_new)
    base = rng.normal(10, 1, n_base)
    new = rng.normal(10 + shift, 1, n_new)
    if decimals is not None:  # force ties: the normal approximation with tie correction
        base, new = np.round(base, decimals), np.round(new, decimals)
    ours = mann_whitney_greater(base, new)
    method = "exact" if ours.method == "exact" else "asymptotic"
    theirs = scipy_stats.mannwhitneyu(new, base, alternative="greater", method=method, use_continuity=True)
    assert ours.u == pytest.approx(theirs.statistic)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-12)


def test_identical_samples_are_not_significant():
    result = mann_whitney_greater([2.0] * 30, [2.0] * 30)
    assert result.p_value == 1.0


def test_parse_threshold():
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("0.1") == pytest.approx(0.1)


def _rows(samples_by_device: dict[str, np.ndarray]) -> list:
    return rows_from_documents(make_result(device=d, samples=list(s), job_id=d) for d, s in samples_by_device.items())


def test_verdicts_on_controlled_distributions():
    rng = np.random.default_rng(7)
    base = {
        "shifted": rng.normal(10.0, 0.2, 60),  # +10%, tight: a real regression
        "noisy": np.array([6.0, 14.0, 9.0, 12.0, 8.0, 11.0]),  # median +10% but interleaved: not significant
        "small": rng.normal(10.0, 0.2, 60),  # +2%, significant but within the 5% budget
        "faster": rng.normal(10.0, 0.2, 60),
    }
    new = {
        "shifted": rng.normal(11.0, 0.2, 60),
        "noisy": np.array([5.0, 16.0, 9.5, 13.5, 8.5, 12.5]),
        "small": rng.normal(10.2, 0.2, 60),
        "faster": rng.normal(8.0, 0.2, 60),
    }
    results = {c.key[0]: c for c in compare_rows(_rows(base), _rows(new), max_regression=0.05)}
    assert results["shifted"].verdict == "regressed"
    assert results["shifted"].p_value < 1e-6
    assert results["noisy"].change == pytest.approx(0.10)
    assert results["noisy"].verdict == "slower"
    assert results["noisy"].p_value > 0.05
    assert results["small"].verdict == "same"
    assert results["faster"].verdict == "improved"


def test_missing_and_new_configurations_are_listed_not_failed():
    rng = np.random.default_rng(1)
    results = compare_rows(_rows({"a": rng.normal(5, 0.1, 20)}), _rows({"b": rng.normal(5, 0.1, 20)}), 0.05)
    assert sorted(c.verdict for c in results) == ["missing", "new"]


def _store(path, samples_by_device):
    with ResultStore(path) as store:
        for device, samples in samples_by_device.items():
            store.put(make_result(device=device, samples=list(samples), job_id=f"{path.stem}-{device}"))
    return path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_exits_21_on_a_significant_regression_and_0_otherwise(tmp_path):
    rng = np.random.default_rng(3)
    baseline = _store(tmp_path / "base.db", {"pi-1": rng.normal(4.0, 0.05, 50), "pi-2": rng.normal(8.0, 0.1, 50)})
    same = _store(tmp_path / "same.db", {"pi-1": rng.normal(4.0, 0.05, 50), "pi-2": rng.normal(8.0, 0.1, 50)})
    worse = _store(tmp_path / "worse.db", {"pi-1": rng.normal(4.0, 0.05, 50), "pi-2": rng.normal(9.0, 0.1, 50)})

    ok = _cli("compare", str(baseline), str(same), "--max-regression", "5%")
    assert ok.returncode == 0, ok.stderr
    assert "pi-1" in ok.stderr
    assert "same" in ok.stderr

    bad = _cli("compare", str(baseline), str(worse), "--max-regression", "5%")
    assert bad.returncode == ExitCode.REGRESSION == 21
    assert "regressed" in bad.stderr
    assert "error: 1 configuration(s) regressed beyond 5%; worst: pi-2" in bad.stderr

    lenient = _cli("compare", str(baseline), str(worse), "--max-regression", "20%", "--json")
    assert lenient.returncode == 0
    document = json.loads(lenient.stdout)
    assert document["regressions"] == 0
    assert {c["key"]["device"]: c["verdict"] for c in document["comparisons"]} == {"pi-1": "same", "pi-2": "same"}


def test_cli_reads_result_json_files(tmp_path):
    rng = np.random.default_rng(4)
    base = tmp_path / "base.json"
    new = tmp_path / "new.json"
    base.write_text(json.dumps(make_result(samples=list(rng.normal(3.0, 0.05, 40)))))
    new.write_text(json.dumps([make_result(samples=list(rng.normal(3.6, 0.05, 40)))]))
    proc = _cli("compare", str(base), str(new))
    assert proc.returncode == 21, proc.stderr
