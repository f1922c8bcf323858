"""Shared code of the course: training loop, plots, notebook generation, setup and grading."""
