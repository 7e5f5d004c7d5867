"""The benchmark reads every scene of a split in each case (its timings are printed, not asserted)."""

from navsim_adapter.bench_scenes import format_table, run
from navsim_adapter.scene_loader import SceneFilter, SceneLoader


def test_bench_counts_every_scene_and_formats_rates(arc_split):
    root, logs = arc_split
    scene_filter = SceneFilter(frame_interval=1, log_names=[logs[2].log_name])  # the log with images
    rows = run(root, "mini", scene_filter=scene_filter, repeats=1)
    expected = len(SceneLoader("mini", data_root=root, scene_filter=scene_filter))
    assert [n for _, n, _ in rows] == [expected] * 4
    assert all(seconds > 0 for _, _, seconds in rows)
    table = format_table(rows, "t")
    assert table.count("\n") == 5 and "scenes + every camera image" in table
