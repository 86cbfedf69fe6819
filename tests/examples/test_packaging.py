"""The demo and its examples are part of the installed package, and say what is missing."""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import tomllib
from pathlib import Path
from typing import Any

import pytest

from llmspans import demo
from llmspans._demo.faults import DEFAULT_FAULTS, parse_faults

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "llmspans" / "examples"


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_every_data_file_of_the_examples_is_declared_as_package_data() -> None:
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]
    undeclared = []
    for path in EXAMPLES.rglob("*"):
        if not path.is_file() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
            continue
        package_dir = next(p for p in path.parents if (p / "__init__.py").is_file())
        package = ".".join(package_dir.relative_to(ROOT).parts)
        relative = path.relative_to(package_dir).as_posix()
        patterns = package_data.get(package, [])
        if not any(fnmatch.fnmatch(relative, pattern) for pattern in patterns):
            undeclared.append(f"{package}: {relative}")
    assert undeclared == []


def test_the_wheel_has_no_top_level_examples_package() -> None:
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["llmspans*"]
    assert not (ROOT / "examples" / "__init__.py").exists()


def test_the_demo_extra_pulls_the_collector_and_the_report() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    assert "llmspans[collector]" in extras["demo"]
    assert any(requirement.startswith("rich") for requirement in extras["demo"])
    base = _pyproject()["project"]["dependencies"]
    assert not any(requirement.startswith("rich") for requirement in base)


def test_without_the_demo_extra_the_demo_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in {"rich", "aiohttp"} else real_find_spec(name, *a),
    )
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert demo.run(parser.parse_args([])) == 2
    message = capsys.readouterr().err
    assert "rich, aiohttp not installed" in message
    assert "pip install 'llmspans[demo]'" in message


def test_the_faults_help_names_the_stages_as_the_report_does() -> None:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "retrieval, context_selection (or selection), generation, action" in text
    default = parse_faults(DEFAULT_FAULTS)
    assert DEFAULT_FAULTS.replace("=", ",").split(",")[::2] == list(default)


def test_an_editable_install_does_not_warn_about_shadowing_folders() -> None:
    """Without an explicit package-dir, setuptools installs an import hook for a flat
    layout and prints a warning block on every editable install."""
    assert _pyproject()["tool"]["setuptools"]["package-dir"] == {"": "."}
