"""The benchmark reads every scene of a split in each case (its timings are printed, not asserted)."""

from benchmarks.scenes import format_table, main, run
from navsim_adapter.scene_loader import SceneFilter, SceneLoader


def test_bench_counts_every_scene_and_formats_rates(arc_split):
    root, logs = arc_split
    scene_filter = SceneFilter(frame_interval=1, log_names=[logs[2].log_name])  # the log with images
    rows = run(root, "mini", scene_filter=scene_filter, repeats=1)
    expected = len(SceneLoader("mini", data_root=root, scene_filter=scene_filter))
    assert [n for _, n, _ in rows] == [expected] * 4
    assert all(seconds > 0 for _, _, seconds in rows)
    table = format_table(rows, "t")
    assert table.count("\n") == 6 and "scenes + every camera image" in table


def test_bench_command_reads_every_camera_of_its_own_split(capsys):
    # `make bench` runs main() without --data-root: the split it synthesizes must have all eight images
    rows = main(["--logs", "1", "--repeats", "1"])
    counts = {case: n for case, n, _ in rows}
    assert counts["scenes + every camera image"] == counts["scenes, no images"] > 0
    assert "scenes/s" in capsys.readouterr().out
