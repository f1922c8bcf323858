"""Checks for chapter 2, section 6 (feature absorption): one module per exercise, each with its probes, its catalogue
of mistakes with their hints, and its alternatives."""

from tests.sae.absorption import hierarchical, rate

EXERCISES = [hierarchical.EXERCISE, rate.EXERCISE]
