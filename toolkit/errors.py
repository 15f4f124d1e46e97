"""One error type for everything a user can get wrong or a device can do wrong.

Every error carries a one-line message, a hint that says what to do about it, and an exit code
that is distinct per class of failure, so scripts and CI can tell an unreachable device from a
corrupt model. This module is imported on devices (inside the runner zipapp): stdlib only.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar


class ExitCode(IntEnum):
    """Process exit codes. Stable: scripts depend on them (documented in README)."""

    OK = 0
    ERROR = 1  # unexpected failure inside edgetk
    USAGE = 2  # bad command line (click's own code)
    BAD_INPUT = 3  # corrupt, empty or wrong-format model or data file
    CONFIG = 4  # invalid YAML, unknown key, bad profile or farm file
    MISSING_DEPENDENCY = 5  # an optional package or tool is not installed
    CONVERSION = 6  # the converter failed or an operator is unsupported
    DELEGATE = 7  # no requested delegate could be applied
    ACCURACY = 8  # a variant failed its accuracy gate
    UNREACHABLE = 10  # device not reachable (DNS, refused, no route, connect timeout)
    AUTH = 11  # authentication refused
    HOST_KEY = 12  # unknown or changed host key
    DEVICE_SETUP = 13  # device lacks Python, numpy or a TFLite runtime
    TIMEOUT = 14  # a command on the device timed out
    DEVICE_LOST = 15  # the device went offline in the middle of a run
    REMOTE_FAILED = 16  # a command on the device exited non-zero
    RUNNER_CRASHED = 17  # the runner died (segfault, OOM kill) on the device
    FARM_INCOMPLETE = 20  # a farm run finished with failed or skipped jobs
    REGRESSION = 21  # `edgetk compare` found a significant regression
    INTERRUPTED = 130  # Ctrl-C


class ToolkitError(Exception):
    """Base of every error edgetk reports to a user."""

    exit_code: ClassVar[ExitCode] = ExitCode.ERROR
    default_hint: ClassVar[str] = ""
    # Transient errors may succeed when retried (the farm retries them with backoff).
    transient: ClassVar[bool] = False

    def __init__(self, message: str, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.details = details

    @property
    def kind(self) -> str:
        """Stable machine-readable name, stored with failed results."""
        return self.exit_code.name.lower()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "type": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
            "transient": self.transient,
        }
        if self.details:
            out["details"] = {k: _jsonable(v) for k, v in self.details.items()}
        return out

    def __str__(self) -> str:
        return self.message


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class BadInputError(ToolkitError):
    exit_code = ExitCode.BAD_INPUT


class ConfigError(ToolkitError):
    exit_code = ExitCode.CONFIG


class MissingDependencyError(ToolkitError):
    exit_code = ExitCode.MISSING_DEPENDENCY


class ConversionError(ToolkitError):
    exit_code = ExitCode.CONVERSION


class DelegateError(ToolkitError):
    exit_code = ExitCode.DELEGATE


class AccuracyError(ToolkitError):
    exit_code = ExitCode.ACCURACY


class DeviceError(ToolkitError):
    """Base for failures reaching or using a device."""

    exit_code = ExitCode.REMOTE_FAILED


class UnreachableError(DeviceError):
    exit_code = ExitCode.UNREACHABLE
    transient = True
    default_hint = "check the address, that the device is powered and on the network, and the port"


class AuthError(DeviceError):
    exit_code = ExitCode.AUTH
    default_hint = "check the user name and that your key is in the device's authorized_keys (ssh-copy-id)"


class HostKeyError(DeviceError):
    exit_code = ExitCode.HOST_KEY
    default_hint = (
        "verify the device's host key and add it to known_hosts (ssh-keyscan), "
        "or set `accept_new_host_key: true` for this device if you trust the network"
    )


class DeviceSetupError(DeviceError):
    exit_code = ExitCode.DEVICE_SETUP


class CommandTimeoutError(DeviceError):
    exit_code = ExitCode.TIMEOUT
    transient = True


class DeviceLostError(DeviceError):
    exit_code = ExitCode.DEVICE_LOST
    transient = True
    default_hint = "the device stopped answering mid-run; check power, cabling and network, then retry"


class RemoteCommandError(DeviceError):
    exit_code = ExitCode.REMOTE_FAILED


class RunnerCrashedError(DeviceError):
    exit_code = ExitCode.RUNNER_CRASHED


class FarmIncompleteError(ToolkitError):
    exit_code = ExitCode.FARM_INCOMPLETE


class RegressionError(ToolkitError):
    exit_code = ExitCode.REGRESSION


class InterruptedByUser(ToolkitError):
    exit_code = ExitCode.INTERRUPTED


_BY_TYPE_NAME = {
    cls.__name__: cls
    for cls in (
        ToolkitError,
        BadInputError,
        ConfigError,
        MissingDependencyError,
        ConversionError,
        DelegateError,
        AccuracyError,
        DeviceError,
        UnreachableError,
        AuthError,
        HostKeyError,
        DeviceSetupError,
        CommandTimeoutError,
        DeviceLostError,
        RemoteCommandError,
        RunnerCrashedError,
        FarmIncompleteError,
        RegressionError,
        InterruptedByUser,
    )
}


def error_from_dict(data: dict[str, Any]) -> ToolkitError:
    """Rebuild an error serialized with `to_dict` (e.g. sent back by the device runner)."""
    cls = _BY_TYPE_NAME.get(str(data.get("type")), ToolkitError)
    return cls(str(data.get("message", "unknown error")), data.get("hint") or None, **data.get("details", {}))
