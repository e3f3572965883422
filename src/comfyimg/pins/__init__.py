"""pins stage."""
