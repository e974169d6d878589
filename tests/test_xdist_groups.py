"""`make test`'s scheduling: every test of an xdist_group runs on one worker, so the group's
shared fixtures (a module's finished experiments, the faults tests' project) are built once."""

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_an_xdist_group_runs_on_one_worker(tmp_path):
    (tmp_path / "conftest.py").write_text(
        f"import sys\nimport pytest\nsys.path.insert(0, {str(TESTS)!r})\nfrom xdist_groups import keep_groups\n\n\n"
        "@pytest.hookimpl(trylast=True)\ndef pytest_collection_modifyitems(items):\n    keep_groups(items)\n")
    (tmp_path / "test_grouped.py").write_text(
        "import os\nfrom pathlib import Path\nimport pytest\n\n\n"
        "@pytest.mark.xdist_group('shared')\n@pytest.mark.parametrize('index', range(4))\n"
        "def test_grouped(index):\n"
        "    Path(f'ran-{index}').write_text(os.environ['PYTEST_XDIST_WORKER'])\n\n\n"
        "@pytest.mark.parametrize('index', range(4))\ndef test_free(index):\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "--no-loadscope-reorder",
                             "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    workers = {(tmp_path / f"ran-{index}").read_text() for index in range(4)}
    assert len(workers) == 1, f"the group ran on {sorted(workers)}"
