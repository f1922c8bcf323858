"""The course's own test suite (pytest): checkers, notebooks, science targets, benchmark and grader."""
