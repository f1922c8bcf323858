"""Checks for chapter 2: sparse autoencoders on toy models."""
