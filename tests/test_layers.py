"""The one-way house is enforced: ``lint-imports`` (import-linter, the contract in ``pyproject.toml``) passes
on the package as it is, and fails once an import that runs backwards is planted in a copy of it, inside a
function as much as at the top; an import under ``if TYPE_CHECKING:`` (annotations only) is not one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]


def _lint(tmp_path: Path, plant: tuple[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of src/paramscope with ``plant`` = (module path, code) appended to one file."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "paramscope", src / "paramscope",
                    ignore=shutil.ignore_patterns("__pycache__", "assets", "schema"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if plant is not None:
        target = src / "paramscope" / plant[0]
        target.write_text(target.read_text() + "\n\n" + plant[1] + "\n")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([*LINT, "--no-cache", "--no-logo"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_package_keeps_every_contract(tmp_path):
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "code", "broken"), [
    # the report drawing itself, lazily: what Report.__str__ did before the views
    ("report.py", "def _draw(r):\n    from paramscope.renderers import render\n    return render(r, 'tree')",
     "paramscope.report is not allowed to import paramscope.renderers"),
    # a reader applying a rule
    ("sources/files.py",
     "def _apply(i):\n    from paramscope.hf_config import apply_config\n    return apply_config(i, None)",
     "paramscope.sources is not allowed to import paramscope.hf_config"),
    # a rule opening files
    ("quantization.py", "def _open(p):\n    from paramscope.sources import safetensors\n    return safetensors.read(p)",
     "paramscope.quantization is not allowed to import paramscope.sources"),
    # the comparison model reaching up for the command line
    ("diff.py", "from paramscope.cli import main as _main", "paramscope.diff is not allowed to import paramscope.cli"),
])
def test_a_backward_import_breaks_the_contract(tmp_path, module, code, broken):
    result = _lint(tmp_path, (module, code))
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout


def test_an_annotation_only_import_is_not_counted(tmp_path):
    code = "if TYPE_CHECKING:\n    from paramscope.renderers import RenderOptions"
    result = _lint(tmp_path, ("report.py", code))
    assert result.returncode == 0, result.stdout + result.stderr
