"""Plots of chapter 1, toy models of superposition: one module per section."""
