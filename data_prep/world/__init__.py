"""The synthetic driving world behind `data_prep.synthesize`.

One module a job: `paths` (arc-length polylines), `road` (lanes, roadblocks, junctions, the map),
`agents` (IDM vehicles, pedestrians, static objects), `driver` (the imperfect rule-based ego),
`scenarios` (the scenario families), `simulate` (the 10 Hz loop), `camera` / `render` (pinhole
images) and `openscene` (frame dicts in the OpenScene log format).
"""
