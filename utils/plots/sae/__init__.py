"""Plots of chapter 2, sparse autoencoders on toy models: one module per section."""
