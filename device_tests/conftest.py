"""Real-hardware tests: `pytest device_tests --device URI [--profile NAME]`.

Without --device every test here is skipped; with --no-skip a missing device (or anything the
device lacks) fails instead of skipping, so CI on a device lab cannot pass by accident (STYLE.md #10).

    pytest device_tests --device ssh://pi@raspberrypi.local --profile rpi5
    pytest device_tests --device adb://R58N12ABCDE --profile galaxy-s24 --benchmark-model ./benchmark_model
    pytest device_tests --device local --no-skip        # this machine, as a smoke test of the suite
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

# The small models the unit tests build with TensorFlow on this machine (cached in .pytest_cache).
from tests.fixtures.tflite_models import (  # noqa: F401  (fixtures, registered by import)
    tflite_cnn_fp32,
    tflite_cnn_fp32_nchw,
    tflite_cnn_int8,
    tflite_models,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgetk devices")
    group.addoption("--device", help="device URI: local, ssh://user@host:port, an ssh alias, adb://SERIAL")
    group.addoption("--profile", dest="device_profile", help="device profile name or YAML file")
    group.addoption("--no-skip", action="store_true", help="fail instead of skipping when a device is missing")
    group.addoption("--benchmark-model", dest="benchmark_model", help="local benchmark_model binary to push")
    group.addoption("--python", dest="device_python", help="the device's Python (default: the profile's)")
    group.addoption("--ssh-config", dest="ssh_config", help="ssh_config file (ssh -F)")
    group.addoption("--accept-new-host-key", action="store_true", help="trust a first-seen ssh host key")
    group.addoption("--workdir", dest="device_workdir", help="edgetk's folder on the device")


@dataclass(frozen=True)
class DeviceUnderTest:
    """The device given on the command line and how to reach it."""

    uri: str
    profile: str | None
    python: str | None = None
    benchmark_model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    no_skip: bool = False

    @property
    def kind(self) -> str:
        from toolkit.transports import transport_kind

        return transport_kind(self.uri)

    def request(self, model: Any, **kwargs: Any) -> Any:
        """A ProfileRequest for this device (short, benchmark_model-like settings unless given)."""
        from toolkit.profile import ProfileRequest
        from toolkit.results import BenchmarkSettings

        kwargs.setdefault("settings", BenchmarkSettings(warmup_runs=3, warmup_min_s=0.2, num_runs=50, min_s=1.0))
        kwargs.setdefault("python", self.python)
        return ProfileRequest(
            model, device=self.uri, profile=self.profile, transport_options=self.options or None, **kwargs
        )

    def open_transport(self) -> Any:
        from toolkit.profile import load_profile_or_none, transport_options_for
        from toolkit.transports import open_transport

        request = self.request("unused.tflite")
        return open_transport(self.uri, transport_options_for(request, load_profile_or_none(self.profile)))

    def unavailable(self, why: str) -> None:
        """Skip (or fail with --no-skip): the device lacks something its profile promises."""
        if self.no_skip:
            pytest.fail(f"{self.uri}: {why}")
        pytest.skip(f"{self.uri}: {why}")


def _options(config: pytest.Config) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if config.getoption("ssh_config"):
        options["ssh_config"] = config.getoption("ssh_config")
    if config.getoption("accept_new_host_key"):
        options["accept_new_host_key"] = True
    if config.getoption("device_workdir"):
        options["workdir"] = config.getoption("device_workdir")
    return options


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> DeviceUnderTest:
    config = request.config
    uri = config.getoption("device")
    if not uri:
        if config.getoption("no_skip"):
            pytest.fail("no --device given (and --no-skip is set)")
        pytest.skip("no --device given: these tests need real hardware (see device_tests/conftest.py)")
    return DeviceUnderTest(
        uri=uri,
        profile=config.getoption("device_profile"),
        python=config.getoption("device_python"),
        benchmark_model=config.getoption("benchmark_model"),
        options=_options(config),
        no_skip=bool(config.getoption("no_skip")),
    )


@pytest.fixture(scope="session")
def device_profile(device: DeviceUnderTest) -> Any:
    """The validated device profile, or None when --profile was not given."""
    from toolkit.profile import load_profile_or_none

    return load_profile_or_none(device.profile)


@pytest.fixture(scope="session")
def runner_mode(device: DeviceUnderTest, device_profile: Any) -> str:
    if device.benchmark_model:
        return "benchmark_model"
    return device_profile.runner.mode if device_profile is not None else "python"
