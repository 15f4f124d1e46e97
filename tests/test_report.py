"""`edgetk report`: summary tables, accuracy from conversion reports, recommendations, plots, and a
page that renders in a real headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.test_store import DEVICE, JOB, make_result
from toolkit.errors import DeviceLostError
from toolkit.farm.documents import error_dict, failure_document, model_section, skipped_document
from toolkit.report import load_report, write_report
from toolkit.report.recommend import pareto_front, recommend
from toolkit.store import ResultStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# (variant, size bytes, accuracy of the variant on the labelled set) — the source model scores 0.95.
VARIANTS = {"fp32": (80_000, 0.95), "fp16": (41_000, 0.95), "int8": (22_000, 0.945), "dynamic": (23_000, 0.90)}
# p50 per (device, variant, delegate)
LATENCY = {
    ("pi-5", "fp32", "xnnpack"): 4.0,
    ("pi-5", "fp16", "xnnpack"): 3.9,
    ("pi-5", "int8", "xnnpack"): 1.5,
    ("pi-5", "dynamic", "xnnpack"): 1.0,  # fastest, but 5 points less accurate: must not be recommended
    ("pi-5", "int8", "cpu"): 2.5,
    ("pixel", "fp32", "gpu"): 1.2,
    ("pixel", "int8", "xnnpack"): 1.6,
    ("pixel", "fp16", "gpu"): 1.19,  # within 1% of the fp32 GPU time and half the size: the tie-break
}


def _conversion_report(path: Path, variant: str, accuracy: float) -> None:
    """What the converter writes beside `<stem>.<variant>.tflite` (edgetk.convert-report/1, abridged)."""
    report = {
        "schema": "edgetk.convert-report/1",
        "variant": variant,
        "size_bytes": VARIANTS[variant][0],
        "accuracy": {
            "output": "logits",
            "source": 0.95,
            "variant": accuracy,
            "delta_points": round(100 * (0.95 - accuracy), 6),
        },
        "outputs": [{"name": "logits", "top1_agreement": 0.99, "cosine": 0.999}],
    }
    path.with_name(path.name.replace(".tflite", ".report.json")).write_text(json.dumps(report))


@pytest.fixture
def results_store(tmp_path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    rng = np.random.default_rng(11)
    store_path = tmp_path / "farm.results.db"
    with ResultStore(store_path) as store:
        for (device, variant, delegate), p50 in LATENCY.items():
            size, accuracy = VARIANTS[variant]
            path = models / f"digits.{variant}.tflite"
            _conversion_report(path, variant, accuracy)
            samples = list(rng.normal(p50, p50 * 0.02, 50))
            document = make_result(
                device,
                "digits",
                variant,
                delegate,
                2,
                samples,
                f"{device}-{variant}-{delegate}",
                size=size,
                path=str(path),
            )
            store.put(document)
        lost = error_dict(DeviceLostError("pi-4 stopped answering"))
        store.put(
            failure_document(
                {**JOB, "job_id": "lost", "device": "pi-4"},
                {**DEVICE, "name": "pi-4"},
                model_section(models / "digits.int8.tflite", "00" * 32, 1, "int8"),
                lost,
                3,
            )
        )
        store.put(
            skipped_document(
                {**JOB, "job_id": "skip", "device": "pi-4"},
                {**DEVICE, "name": "pi-4"},
                model_section(models / "digits.fp32.tflite", "00" * 32, 1, "fp32"),
                "device pi-4 quarantined: lost",
            ),
            status="skipped",
        )
    return store_path


def test_summary_rows_carry_accuracy_delegation_and_status(results_store):
    report = load_report([results_store])
    assert report.counts() == {"ok": len(LATENCY), "failed": 1, "skipped": 1}
    dynamic = next(r for r in report.rows if r.variant == "dynamic")
    assert dynamic.accuracy == pytest.approx(90.0)
    assert dynamic.accuracy_drop == pytest.approx(5.0)
    assert dynamic.accuracy_metric == "task accuracy"
    assert dynamic.delegated_share == pytest.approx(0.9)
    skipped = next(r for r in report.rows if r.status == "skipped")
    assert "quarantined" in skipped.error_message


def test_recommendation_is_fastest_within_the_accuracy_budget(results_store):
    report = load_report([results_store])
    recs = report.recommendations
    assert (recs["pi-5"].variant, recs["pi-5"].delegate) == ("int8", "xnnpack")  # dynamic is 5 points worse
    assert (recs["pixel"].variant, recs["pixel"].delegate) == ("fp16", "gpu")
    assert "pi-4" not in recs  # nothing measured there
    generous = recommend(report.rows, accuracy_budget=10.0)
    assert generous["pi-5"].variant == "dynamic"


def test_pareto_front_drops_dominated_configurations(results_store):
    rows = [r for r in load_report([results_store]).rows if r.device == "pi-5" and r.status == "ok"]
    front = {(r.variant, r.delegate) for r in pareto_front(rows)}
    assert ("int8", "cpu") not in front  # int8/xnnpack is as small, as accurate and faster
    assert ("fp32", "xnnpack") not in front  # fp16 is smaller and faster with the same accuracy
    assert {("int8", "xnnpack"), ("dynamic", "xnnpack")} <= front


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_text_formats(results_store, tmp_path, fmt):
    out = tmp_path / f"report.{fmt}"
    write_report([results_store], out, fmt)
    text = out.read_text()
    if fmt == "md":
        assert "| pi-5 | digits | int8 | xnnpack |" in text
        assert "**int8**" in text  # the recommended row is bold
        assert "pi-4 quarantined" in text
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == len(LATENCY) + 2
        assert sum(r["recommended"] == "True" for r in rows) == 2
    else:
        document = json.loads(text)
        assert document["recommendations"]["pi-5"]["variant"] == "int8"
        assert document["counts"]["failed"] == 1
    recommendations = yaml.safe_load((tmp_path / "report.recommendations.yaml").read_text())
    assert recommendations["devices"]["pixel"]["delegate"] == "gpu"
    assert recommendations["accuracy_budget_points"] == 1.0


def _screenshot(page: Path, tmp_path: Path) -> Path:
    shot = tmp_path / "shot.png"
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    subprocess.run(argv, capture_output=True, timeout=120, check=True, env={**os.environ, "HOME": str(tmp_path)})
    return shot


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (scripts/install-system-deps.sh)")
def test_html_page_is_self_contained_and_renders_in_chromium(results_store, tmp_path):
    from PIL import Image

    page = tmp_path / "report.html"
    write_report([results_store], page, "html")
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 2  # Pareto and latency distributions
    assert "src='http" not in html
    assert 'src="http' not in html
    assert "<link" not in html
    for needle in ("Recommendations", "pi-5", "pixel", "int8", "Failed and skipped jobs", "quarantined"):
        assert needle in html
    image = Image.open(_screenshot(page, tmp_path)).convert("RGB")
    assert image.size == (1280, 2400)
    pixels = np.asarray(image)
    non_white = (pixels.min(axis=2) < 240).mean()
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert non_white > 0.03, "the page rendered (almost) blank"
    assert colours > 50, "no plots visible: too few distinct colours"


def test_cli_report_prints_recommendations_and_writes_files(results_store, tmp_path):
    out = tmp_path / "out" / "r.md"
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "report", str(results_store), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Recommendation per device" in proc.stderr
    assert "pi-5" in proc.stderr
    assert out.exists()
    assert (tmp_path / "out" / "r.recommendations.yaml").exists()


def test_cli_report_reads_json_results_and_rejects_junk(tmp_path):
    good = tmp_path / "one.json"
    good.write_text(json.dumps(make_result()))
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "report", str(good), "-o", str(tmp_path / "r.json"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["recommendations"]["pi-1"]["variant"] == "int8"
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "report", str(junk)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3
    assert "neither a results store nor JSON" in proc.stderr
