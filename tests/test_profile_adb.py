"""`profile_model` over adb: the real adb client and server against the adbd-protocol test server.

Both runner modes: the Python runner (the "phone" runs our venv's Python in its sandbox) and
TFLite's benchmark_model (the sandbox's program prints a verbatim recorded output of the tool).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fixtures.adb import adb_options_for
from toolkit.errors import DeviceSetupError
from toolkit.profile import ProfileRequest, profile_model
from toolkit.results import BenchmarkSettings, validate_result

pytestmark = pytest.mark.network

QUICK = BenchmarkSettings(warmup_runs=2, warmup_min_s=0.0, num_runs=30, min_s=0.0, max_s=20.0)


def _request(model, adbd, adb_server, **kwargs):
    options = adb_options_for(adb_server, adbd, **kwargs.pop("options", {}))
    kwargs.setdefault("settings", QUICK)
    return ProfileRequest(model, device=f"adb://{adbd.serial}", transport_options=options, **kwargs)


def test_python_runner_over_adb_end_to_end_and_cached(adbd, adb_server, tflite_cnn_fp32):
    from toolkit.transports import open_transport

    request = _request(tflite_cnn_fp32, adbd, adb_server, python=sys.executable)
    transport = open_transport(request.device, request.transport_options)
    uploads = []
    push = transport.push
    transport.push = lambda local, remote: (uploads.append(remote), push(local, remote))
    try:
        result = profile_model(request, transport)
        validate_result(result)
        assert result["device"]["transport"] == "adb"
        assert result["config"]["runner"] == "python"
        assert result["timings"]["count"] >= 30
        assert result["parity"]["cosine"] > 0.9999
        assert len(uploads) == 2
        profile_model(request, transport)
        assert len(uploads) == 2  # runner and model cached on the phone
        workdir = Path(adbd.device_path("/data/local/tmp/edgetk"))
        assert list((workdir / "runs").iterdir()) == []
    finally:
        transport.close()


def test_phone_without_python_is_a_setup_error_with_a_hint(adbd, adb_server, tflite_cnn_fp32):
    request = _request(tflite_cnn_fp32, adbd, adb_server, python="/system/bin/python3-not-here")
    with pytest.raises(DeviceSetupError) as excinfo:
        profile_model(request)
    assert "no Python" in excinfo.value.message
    assert "--python" in excinfo.value.hint
