"""navsim_adapter."""
