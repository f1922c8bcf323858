"""Facts about the course that more than one tool needs. The repository address lives here and nowhere else."""

from dataclasses import dataclass

COURSE_NAME = "tms-sae-course"
COURSE_VERSION = "0.1.0"
# Not published yet: when it is, this is the only line to change (notebook badges and setup cells follow).
REPOSITORY = "https://github.com/tms-sae-course/tms-sae-course"
BRANCH = "main"


@dataclass(frozen=True)
class Chapter:
    """A chapter of the course: its notebooks live in `folder` (sources in `folder/src`), its reference code in
    `solutions.<package>`, its checks in `tests.<package>` and its plots in `utils.plots.<package>`."""

    number: int
    folder: str
    package: str
    title: str


CHAPTERS = (
    Chapter(1, "chapter_tms", "tms", "Toy models of superposition"),
    Chapter(2, "chapter_sae", "sae", "Sparse autoencoders on toy models"),
)
