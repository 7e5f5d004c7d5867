"""The backbone benchmark runs end to end on the tiny preset and prints a readable table."""

from benchmarks.backbone import bench_preset, format_table


def test_bench_tiny_rows_and_table():
    rows = bench_preset("tiny", batch=1, text_len=6, repeats=1, device="cpu")
    assert [r["mode"] for r in rows] == ["forward", "fwd+bwd (LoRA)"]
    assert all(r["ms_per_obs"] > 0 and r["seq"] == 6 + 16 for r in rows)
    table = format_table(rows)
    assert "tiny" in table and "ms / obs" in table
