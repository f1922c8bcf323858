"""Facts about the course that more than one tool needs. The repository address lives here and nowhere else."""

COURSE_NAME = "tms-sae-course"
COURSE_VERSION = "0.1.0"
# Not published yet: when it is, this is the only line to change (notebook badges and setup cells follow).
REPOSITORY = "https://github.com/tms-sae-course/tms-sae-course"
BRANCH = "main"
