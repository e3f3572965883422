"""bump stage."""
