"""Checks for chapter 1: toy models of superposition."""
