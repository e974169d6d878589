"""bench/own_data.py's bookkeeping: whether a bar is met, and its row in bench/RESULTS.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import own_data  # noqa: E402


def record(**changes):
    figures = {"returncode": 0, "dice": 0.94, "trivial_dice": 0.87, "test_images": 6, "seconds": 300.0,
               "install_seconds": None, "revision": "0123456789abcdef", "date": "2026-11-26 11:00 UTC",
               "load_average_before": [1.5, 1.0, 1.0], "load_average_after": [2.0, 1.0, 1.0],
               "bar": own_data.BARS["isbi"]}
    figures.update(changes)
    return figures


def test_isbi_bar_needs_dice_time_and_the_plateau():
    bar = own_data.BARS["isbi"]   # issue 26's: Dice >= 0.95 (and trivial + 0.06), <= 1200 s, stopped by the plateau
    assert own_data.bar_met(bar, record(dice=0.95, stopped_by="plateau"))
    assert not own_data.bar_met(bar, record(dice=0.94, stopped_by="plateau"))
    assert not own_data.bar_met(bar, record(dice=0.96, trivial_dice=0.91, stopped_by="plateau"))  # 0.91 + 0.06
    assert not own_data.bar_met(bar, record(dice=0.95, stopped_by="plateau", seconds=1201.0))
    assert not own_data.bar_met(bar, record(dice=0.95, stopped_by="ceiling"))
    assert not own_data.bar_met(bar, record(dice=0.95, stopped_by="plateau", returncode=1))


def test_synthetic_bar_counts_the_install():
    bar = own_data.BARS["synthetic"]
    assert own_data.bar_met(bar, record(dice=0.85, test_images=14, seconds=150.0, install_seconds=80.0))
    assert not own_data.bar_met(bar, record(dice=0.85, test_images=14, seconds=150.0, install_seconds=100.0))
    assert not own_data.bar_met(bar, record(dice=0.85, test_images=14, seconds=150.0, install_seconds=None))


def test_results_md_row_is_replaced_not_repeated(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Earlier section\n\ntext\n")
    own_data.refresh_results_md("isbi", dict(record(), bar_met=True), results)
    own_data.refresh_results_md("soybean", dict(record(dice=0.9, bar=own_data.BARS["soybean"]), bar_met=True),
                                results)
    own_data.refresh_results_md("isbi", dict(record(dice=0.95), bar_met=True), results)
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## Earlier section\n\ntext\n")
    assert text.count(own_data.SECTION) == 1
    rows = [line for line in text.splitlines() if line.startswith("| isbi |")]
    assert len(rows) == 1 and "| 0.9500 |" in rows[0]
    assert sum(line.startswith("| soybean |") for line in text.splitlines()) == 1
