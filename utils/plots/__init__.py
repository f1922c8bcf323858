"""Plots of the course, one module per section (e.g. `utils.plots.superposition` for chapter 1, section 1)."""
