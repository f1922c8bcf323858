"""Plots of the course: one package per chapter, one module per section (e.g. `utils.plots.tms.superposition`
for chapter 1, section 1).

Plots belong to the runtime library: they take tensors and return plotly figures, and import nothing from
`solutions` or `tests`.
"""
