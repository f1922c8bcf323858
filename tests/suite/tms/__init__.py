"""The suite's tests of chapter 1: the science its notebooks claim, and the plots they show."""
