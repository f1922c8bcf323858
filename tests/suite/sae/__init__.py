"""The suite's tests of chapter 2: the science its notebooks claim, its plots, and its file format."""
