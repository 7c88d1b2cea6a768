"""The import contract (.importlinter): the apps depend one way (insight -> responses -> learning
-> listening, the project wiring above them and cxm's core modules below), with no circle inside
an app. It holds on this tree, and it catches what it is there to catch: a backwards import at
module level or hidden in a function, and a circle, written into a copy of the packages."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
LINT = Path(sys.executable).with_name("lint-imports")


def _packages() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return parser["importlinter"]["root_packages"].split()


def lint(where: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run([str(LINT), "--config", str(where / ".importlinter"), "--no-cache"], cwd=where, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def copy(tmp_path) -> Path:
    """The packages' Python files and the contract, in a scratch directory."""
    keep_python = shutil.ignore_patterns("__pycache__", "*.pyc")

    def only_python(directory, names):
        skipped = set(keep_python(directory, names))
        return skipped | {n for n in names if not n.endswith(".py") and not (Path(directory) / n).is_dir()}

    for package in _packages():
        shutil.copytree(ROOT / package, tmp_path / package, ignore=only_python)
    shutil.copy(CONFIG, tmp_path / ".importlinter")
    return tmp_path


def test_import_contract_holds_on_this_tree():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout, result.stdout[-2000:]


def test_import_contract_fails_on_a_backwards_import_at_module_level(copy):
    (copy / "listening" / "backwards.py").write_text("from responses import events  # noqa\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "listening.backwards -> responses.events" in result.stdout, result.stdout[-3000:]


def test_import_contract_fails_on_a_backwards_import_hidden_in_a_function(copy):
    (copy / "learning" / "lazy.py").write_text("def later():\n    from insight import dashboards  # noqa\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "learning.lazy -> insight.dashboards" in result.stdout, result.stdout[-3000:]


def test_import_contract_fails_when_a_core_module_imports_an_app(copy):
    """cxm.exceptions sits below every app: it may not reach up into one."""
    path = copy / "cxm" / "exceptions.py"
    path.write_text(path.read_text() + "\n\ndef _later():\n    from listening import models  # noqa\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "cxm.exceptions -> listening.models" in result.stdout, result.stdout[-3000:]


def test_import_contract_fails_on_a_circle_inside_an_app(copy):
    (copy / "responses" / "circle_a.py").write_text("def f():\n    from responses import circle_b  # noqa\n")
    (copy / "responses" / "circle_b.py").write_text("from responses import circle_a  # noqa\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "circle_a" in result.stdout and "circle_b" in result.stdout, result.stdout[-3000:]
