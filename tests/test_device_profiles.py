"""Device profiles: every shipped one validates; mistakes point at file, line and a suggestion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.device_profiles import PROFILE_DIR, list_profiles, load_profile, profile_path
from toolkit.errors import ConfigError

REQUIRED = {"local", "rpi4", "rpi5", "rpi5-coral", "pixel-8", "galaxy-s24", "imx8mp"}


def test_the_required_profiles_ship():
    assert set(list_profiles()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
def test_every_shipped_profile_validates(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.preferred_delegates[-1] in ("cpu", "xnnpack")
    assert all(t >= 1 for t in profile.threads)
    if profile.runner.mode == "benchmark_model":
        assert profile.runner.benchmark_model.startswith("/data/local/tmp/")
    else:
        assert profile.runtime in ("ai_edge_litert", "tflite_runtime")


def test_profiles_carry_the_facts_the_profiler_uses():
    pi5 = load_profile("rpi5")
    assert pi5.cores == 4
    assert "A76" in pi5.cpu
    assert pi5.thermal_zones == ["cpu-thermal"]
    assert pi5.runner.accept_new_host_key is False
    coral = load_profile("rpi5-coral")
    assert coral.preferred_delegates[0] == "edgetpu"
    assert coral.delegate_settings()["edgetpu"] == {
        "library": "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1",
        "options": {"device": "usb"},
    }
    assert load_profile("imx8mp").delegates["vx"].library == "/usr/lib/libvx_delegate.so"
    pixel = load_profile("pixel-8")
    assert (pixel.os, pixel.abi, pixel.android_api) == ("android", "arm64-v8a", 34)
    assert pixel.delegates["nnapi"].options["accelerator_name"] == "google-edgetpu"


def _broken(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (PROFILE_DIR / f"{name}.yaml").read_text()
    assert old in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("profile", "old", "new", "needle", "message"),
    [
        ("rpi5", "threads:", "thread:", "thread:", "thread: unknown key (did you mean 'threads'?)"),
        (
            "rpi5",
            "  python: python3",
            "  pyhton: python3",
            "pyhton",
            "runner.pyhton: unknown key (did you mean 'python'?)",
        ),
        (
            "rpi5-coral",
            "      device: usb",
            "      devic: usb",
            "delegates:",
            "unknown option 'devic' (did you mean 'device'?)",
        ),
        (
            "rpi4",
            "preferred_delegates: [xnnpack, cpu]",
            "preferred_delegates: [xnnpak, cpu]",
            "preferred_delegates",
            "unknown delegate 'xnnpak' (did you mean 'xnnpack'?)",
        ),
        ("imx8mp", "abi: aarch64", "abi: aarch46", "abi:", "'aarch46' is not one of"),
        ("pixel-8", "  gpu:\n", "  gpuu:\n", "delegates:", "unknown delegate 'gpuu' (did you mean 'gpu'?)"),
    ],
)
def test_a_typo_fails_with_file_line_and_suggestion(tmp_path, profile, old, new, needle, message):
    path = _broken(tmp_path, profile, old, new)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    first = info.value.message
    assert first.startswith(f"{path}:{_line_of(path, needle)}: "), first
    assert message in first


def test_preferred_delegates_need_an_entry(tmp_path):
    path = _broken(tmp_path, "rpi5", "preferred_delegates: [xnnpack, cpu]", "preferred_delegates: [gpu, xnnpack]")
    with pytest.raises(ConfigError, match="preferred delegate 'gpu' has no entry under `delegates:`"):
        load_profile(path)


def test_benchmark_model_mode_needs_the_binary(tmp_path):
    path = _broken(tmp_path, "pixel-8", "  benchmark_model: /data/local/tmp/benchmark_model\n", "")
    with pytest.raises(ConfigError, match="needs `benchmark_model:`"):
        load_profile(path)


def test_unknown_profile_names_get_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'rpi5'"):
        load_profile("rpi-5")
    with pytest.raises(ConfigError, match="profile file not found"):
        profile_path("/nonexistent/board.yaml")


def test_extra_profile_folders_come_first(tmp_path, monkeypatch):
    (tmp_path / "rpi5.yaml").write_text(
        (PROFILE_DIR / "rpi5.yaml").read_text().replace("threads: [1, 2, 4]", "threads: [3]")
    )
    (tmp_path / "myboard.yaml").write_text(
        (PROFILE_DIR / "rpi4.yaml").read_text().replace("name: rpi4", "name: myboard")
    )
    monkeypatch.setenv("EDGETK_PROFILES", str(tmp_path))
    assert load_profile("rpi5").threads == [3]
    assert "myboard" in list_profiles()


def test_profiles_cli(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(main, ["profiles", "list", "--json"])
    assert listed.exit_code == 0
    assert {row["name"] for row in json.loads(listed.output)} >= REQUIRED
    ok = runner.invoke(main, ["profiles", "validate"])
    assert ok.exit_code == 0
    assert ok.output.count("ok  ") == len(list_profiles())
    bad = _broken(tmp_path, "rpi5", "threads:", "thread:")
    failed = runner.invoke(main, ["profiles", "validate", "rpi4", str(bad)])
    assert failed.exit_code == 4
    assert f"error: {bad}:" in failed.output
    assert "did you mean 'threads'" in failed.output
    shown = runner.invoke(main, ["profiles", "show", "galaxy-s24", "--json"])
    assert shown.exit_code == 0
    assert json.loads(shown.output)["delegates"]["qnn"]["options"]["backend_type"] == "htp"
