"""`python -m vla_dipole.demo`: see vla_dipole.demo.cli."""

from vla_dipole.demo.cli import main

if __name__ == "__main__":
    main()
