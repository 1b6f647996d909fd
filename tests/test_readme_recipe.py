"""README's code blocks, run to the letter from outside the package."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def run_section(heading: str, tmp_path: Path) -> str:
    """Run the first python block under `heading` as a script; return its standard output."""
    section = README.read_text().split(f"## {heading}\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "readme_block.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_new_op_recipe_runs_as_written(tmp_path):
    out = run_section("Defining a new op", tmp_path)
    assert out.startswith("program(a: Scalar, b: Scalar, c: Scalar) -> Scalar:")
    assert "return s" in out


def test_the_memory_devices_example_runs_as_written(tmp_path):
    out = run_section("Memory devices", tmp_path)
    assert out.splitlines()[0] == "(4, 16)"
    assert out.splitlines()[-1] == "(0.0, 0.0, 0.0)"
