"""`executor: dask`: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1, each
declaring different simulated devices (private sshd servers) as worker resources. Jobs run on the
worker that owns their device; results come back to the controller, which stores them."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.ssh import needs_sshd
from tests.servers.procs import free_port, stop_process
from toolkit.farm.jobs import local_model_path
from toolkit.store import open_store

distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).with_name("dask"))
SETTINGS = {"warmup_runs": 1, "warmup_min_s": 0.0, "num_runs": 10, "min_s": 0.02, "max_s": 0.5}


class DaskCluster:
    """A scheduler and named workers, started as separate processes and stopped by PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port("127.0.0.1")
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)
        )
        log.close()

    def start(self, workers: dict[str, list[str]]) -> DaskCluster:
        self._spawn("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"])
        for name, devices in workers.items():
            resources = " ".join(f"device:{d}=1" for d in devices)
            argv = [DASK, "worker", self.address, "--host", "127.0.0.1", "--name", name, "--nthreads", "4"]
            self._spawn(name, [*argv, "--nworkers", "1", "--no-dashboard", "--resources", resources])
        with distributed.Client(self.address, timeout=60) as client:
            client.wait_for_workers(len(workers), timeout=60)
            self.workers = {
                info["name"]: address for address, info in client.scheduler_info(n_workers=-1)["workers"].items()
            }
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


@pytest.fixture
def dask_cluster(tmp_path):
    clusters: list[DaskCluster] = []

    def make(workers: dict[str, list[str]]) -> DaskCluster:
        cluster = DaskCluster(tmp_path)
        clusters.append(cluster)
        return cluster.start(workers)

    yield make
    for cluster in clusters:
        cluster.stop()


@needs_sshd
@pytest.mark.network
def test_jobs_run_on_the_worker_that_declares_their_device(
    dask_cluster, sshd_factory, tmp_path, tflite_cnn_fp32, tflite_cnn_int8
):
    shutil.copy(tflite_cnn_fp32, tmp_path / "cnn_fp32.tflite")
    shutil.copy(tflite_cnn_int8, tmp_path / "cnn_int8.tflite")
    servers = {"pi-a": sshd_factory(host="127.0.0.2"), "pi-b": sshd_factory(host="127.0.0.3")}
    cluster = dask_cluster({"host-a": ["pi-a"], "host-b": ["pi-b"]})
    devices = [
        {"name": name, "uri": s.uri, "transport": {**s.transport_options(), "python": sys.executable}}
        for name, s in servers.items()
    ]
    devices.append({"name": "orphan", "uri": "local"})  # no worker declares it
    farm = tmp_path / "dask.yaml"
    farm.write_text(
        yaml.safe_dump(
            {
                "name": "dask",
                "models": ["cnn_fp32.tflite", "cnn_int8.tflite"],
                "devices": devices,
                "matrix": {"delegates": ["xnnpack"], "threads": [1, 2]},
                "settings": SETTINGS,
                "executor": "dask",
                "dask": {"scheduler": cluster.address},
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "farm", "run", str(farm), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 20, proc.stderr  # the orphan's jobs are skipped
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    finished = [e for e in events if e["event"] == "job_finished"]
    assert len(finished) == 12
    for device, worker in (("pi-a", "host-a"), ("pi-b", "host-b")):
        mine = [e for e in finished if e["device"] == device]
        assert [e["status"] for e in mine] == ["ok"] * 4
        assert {e["worker"] for e in mine} == {cluster.workers[worker]}  # pinned to the declaring worker
    orphan = [e for e in finished if e["device"] == "orphan"]
    assert [e["status"] for e in orphan] == ["skipped"] * 4
    assert "no Dask worker declares the resource 'device:orphan'" in orphan[0]["error"]

    with open_store(tmp_path / "dask.results.db") as store:
        rows = store.rows("dask")
        assert len(rows) == 12
        documents = list(store.documents("dask", ["ok"]))
    assert len(documents) == 8
    assert {d["job"]["tags"]["worker"] for d in documents if d["device"]["name"] == "pi-b"} == {
        cluster.workers["host-b"]
    }
    assert all(d["model"]["path"].startswith(str(tmp_path)) for d in documents)  # the controller's path


def test_worker_materializes_a_model_it_does_not_have(tmp_path, monkeypatch, tflite_cnn_fp32):
    data = tflite_cnn_fp32.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    monkeypatch.setenv("EDGETK_WORKER_CACHE", str(tmp_path / "cache"))
    model = {"path": "/controller/only/cnn.tflite", "sha256": sha, "size": len(data)}
    path = Path(local_model_path(model, data))
    assert path == tmp_path / "cache" / f"{sha}.tflite"
    assert path.read_bytes() == data
    assert local_model_path({**model, "path": str(tflite_cnn_fp32)}, None) == str(tflite_cnn_fp32)
    with pytest.raises(Exception, match="do not match their hash"):
        local_model_path({**model, "sha256": "0" * 64}, data)
