"""Per-device transport options: a discriminated union on `type: local|ssh|adb` (STYLE.md #6).

A farm file embeds one of these per device; `edgetk profile --device URI` builds them from the URI.
Unknown keys are errors (extra="forbid"), so a typo in a farm file is reported, not ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalOptions(_Options):
    """This machine, commands in child processes."""

    type: Literal["local"] = "local"
    workdir: str | None = None  # default: $XDG_CACHE_HOME/edgetk/local (~/.cache/edgetk/local)
    python: str | None = None  # default: the Python running edgetk


class SshOptions(_Options):
    """A Linux board through the system OpenSSH client."""

    type: Literal["ssh"] = "ssh"
    user: str | None = None  # overrides the URI's user and ssh_config's User
    port: int | None = Field(default=None, ge=1, le=65535)
    identity_file: str | None = None
    ssh_config: str | None = None  # passed as `ssh -F FILE` (else ssh reads ~/.ssh/config)
    known_hosts: str | None = None  # UserKnownHostsFile (else ssh's default ~/.ssh/known_hosts)
    accept_new_host_key: bool = False  # StrictHostKeyChecking=accept-new instead of yes
    connect_timeout_s: int = Field(default=10, ge=1)
    server_alive_interval_s: int = Field(default=5, ge=1)
    server_alive_count_max: int = Field(default=3, ge=1)
    control_persist_s: int = Field(default=120, ge=1)  # how long an idle shared connection stays up
    multiplex: bool = True  # one shared connection per device (ControlMaster)
    ssh_options: list[str] = Field(default_factory=list)  # extra `-o` settings, e.g. "ProxyJump=bastion"
    workdir: str = ".cache/edgetk"  # relative paths are under the login's home folder
    python: str = "python3"
    ssh_path: str = "ssh"
    scp_path: str = "scp"


class AdbOptions(_Options):
    """An Android device through the platform-tools `adb` client."""

    type: Literal["adb"] = "adb"
    serial: str | None = None  # overrides the URI (USB serial or host:port)
    adb_path: str = "adb"
    server_port: int | None = Field(default=None, ge=1, le=65535)  # ANDROID_ADB_SERVER_PORT / adb -P
    connect_timeout_s: float = Field(default=10.0, gt=0)
    reconnect: bool = True  # for host:port devices: disconnect + connect when the server shows offline
    workdir: str = "/data/local/tmp/edgetk"
    python: str | None = None  # most phones have none; the benchmark_model mode needs no Python


TransportOptions = Annotated[LocalOptions | SshOptions | AdbOptions, Field(discriminator="type")]
