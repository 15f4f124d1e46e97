"""Config errors name the file, the line and the key, with a suggestion for typos."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from toolkit.errors import ConfigError, ExitCode
from toolkit.yamlconfig import load_config


class _Device(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    uri: str = "local"
    kind: Literal["ssh", "adb", "local"] = "local"


class _Farm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    devices: list[_Device] = Field(default_factory=list)
    options: dict[str, _Device] = Field(default_factory=dict)


def _write(tmp_path, text):
    path = tmp_path / "farm.yaml"
    path.write_text(text)
    return path


def test_typo_in_nested_key_names_line_field_and_suggestion(tmp_path):
    path = _write(tmp_path, "devices:\n  - name: a\n  - nam: b\n    uri: ssh://x\n")
    with pytest.raises(ConfigError) as info:
        load_config(_Farm, path)
    assert info.value.exit_code == ExitCode.CONFIG
    assert f"{path}:3: devices[1].nam: unknown key (did you mean 'name'?)" in info.value.message


def test_bad_literal_value_gets_a_suggestion(tmp_path):
    path = _write(tmp_path, "devices:\n  - name: a\n    kind: shh\n")
    with pytest.raises(ConfigError) as info:
        load_config(_Farm, path)
    assert info.value.message.startswith(f"{path}:3: devices[0].kind: 'shh' is not one of")
    assert "did you mean 'ssh'?" in info.value.message


def test_missing_key_and_dict_values(tmp_path):
    path = _write(tmp_path, "options:\n  pi:\n    uri: ssh://pi\n")
    with pytest.raises(ConfigError) as info:
        load_config(_Farm, path)
    assert info.value.message.startswith(f"{path}:2: options.pi.name: required key is missing")


def test_invalid_yaml_reports_the_line(tmp_path):
    path = _write(tmp_path, "devices:\n  - name: [a\n")
    with pytest.raises(ConfigError) as info:
        load_config(_Farm, path)
    assert "invalid YAML" in info.value.message
    assert str(path) in info.value.message


def test_every_problem_is_listed(tmp_path):
    path = _write(tmp_path, "devices:\n  - nme: a\n  - name: b\n    urj: c\n")
    with pytest.raises(ConfigError) as info:
        load_config(_Farm, path)
    problems = info.value.details["problems"]
    assert len(problems) == 3  # nme unknown, name missing, urj unknown
    assert any(":4: devices[1].urj: unknown key (did you mean 'uri'?)" in p for p in problems)
