"""vla_dipole."""
