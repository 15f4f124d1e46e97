"""Reach a device: `open_transport("local" | "ssh://user@host:port" | ssh alias | "adb://SERIAL")`.

    with open_transport("ssh://pi@10.0.0.5", {"accept_new_host_key": True}) as t:
        t.mkdir(t.workdir)
        t.push("model.tflite", f"{t.workdir}/model.tflite")
        print(t.run(["python3", "-c", "print(1)"], timeout=30).stdout)

The transport classes are imported only when a URI of their kind is opened. Device-side code
(toolkit/runner) must not import this package.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from toolkit.errors import ConfigError
from toolkit.transports.base import Command, CommandResult, Transport
from toolkit.transports.options import AdbOptions, LocalOptions, SshOptions, TransportOptions

__all__ = [
    "AdbOptions",
    "Command",
    "CommandResult",
    "LocalOptions",
    "SshOptions",
    "Transport",
    "TransportOptions",
    "open_transport",
    "options_for",
    "transport_kind",
]


@dataclass(frozen=True)
class TransportSpec:
    """One kind of transport: its options model and where its class lives."""

    kind: str
    target: str  # "module:Class", imported on first use
    options: type[BaseModel]

    def load(self) -> type[Transport]:
        module, attr = self.target.split(":")
        return getattr(importlib.import_module(module), attr)


TRANSPORTS: dict[str, TransportSpec] = {
    spec.kind: spec
    for spec in (
        TransportSpec("local", "toolkit.transports.local:LocalTransport", LocalOptions),
        TransportSpec("ssh", "toolkit.transports.ssh:SshTransport", SshOptions),
        TransportSpec("adb", "toolkit.transports.adb:AdbTransport", AdbOptions),
    )
}


def transport_kind(uri: str) -> str:
    """ "local", "ssh" or "adb" for a device URI; a bare name is an ssh_config Host alias."""
    uri = uri.strip()
    if uri in ("local", "local://"):
        return "local"
    scheme, sep, _ = uri.partition("://")
    if not sep:
        if not uri or any(c.isspace() for c in uri):
            raise ConfigError(f"{uri!r} is not a device address", _URI_HINT)
        return "ssh"
    if scheme not in TRANSPORTS:
        raise ConfigError(f"{uri}: unknown device scheme {scheme!r}", _URI_HINT)
    return scheme


_URI_HINT = "use local, ssh://user@host:port, an ssh_config Host alias, adb://SERIAL or adb://host:port"


def options_for(uri: str, options: BaseModel | Mapping[str, Any] | None = None) -> BaseModel:
    """Validate options (a model or a dict, e.g. from a farm file) for the URI's transport kind."""
    spec = TRANSPORTS[transport_kind(uri)]
    if options is None:
        return spec.options()
    if isinstance(options, BaseModel):
        if not isinstance(options, spec.options):
            raise ConfigError(
                f"{uri}: options of type {getattr(options, 'type', '?')!r} given for a {spec.kind} device",
                "make the options' `type` match the device URI",
            )
        return options
    data = dict(options)
    data.setdefault("type", spec.kind)
    if data["type"] != spec.kind:
        raise ConfigError(
            f"{uri}: options say type {data['type']!r} but the URI is a {spec.kind} device",
            "make the options' `type` match the device URI",
        )
    from toolkit.yamlconfig import validate

    return validate(spec.options, data, f"options for {uri}")


def open_transport(uri: str, options: BaseModel | Mapping[str, Any] | None = None) -> Transport:
    """Open a transport to a device; use it as a context manager or call close()."""
    spec = TRANSPORTS[transport_kind(uri)]
    return spec.load()(uri.strip(), options_for(uri, options))
