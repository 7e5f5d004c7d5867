"""The demo: the whole pipeline on the built-in synthetic NAVSIM world (`python -m vla_dipole.demo`).

`cli` runs it (one seed or several; `runner` runs each stage's command), `report` writes its results over seeds, `real_path` runs the
README's real-data commands on synthetic data (`python -m vla_dipole.demo.real_path`).
"""
