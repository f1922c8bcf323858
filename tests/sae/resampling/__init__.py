"""Checks for chapter 2, section 4 (resampling dead latents): one module per exercise, each with its probes, its
catalogue of mistakes with their hints, and its alternatives (`simple`, `advanced`); `shared` holds what both use."""

from tests.sae.resampling import advanced, simple

EXERCISES = [simple.EXERCISE, advanced.EXERCISE]
