"""README's "Defining a new op" recipe, run to the letter from outside the package."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_new_op_recipe_runs_as_written(tmp_path):
    section = README.read_text().split("## Defining a new op", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "my_ops.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("program(a: Scalar, b: Scalar, c: Scalar) -> Scalar:")
    assert "return s" in done.stdout
