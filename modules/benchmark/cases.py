"""What the benchmark generates: the cases (model, size, steps) and the settings they share."""

from __future__ import annotations

from dataclasses import dataclass

PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed, sharp focus, dramatic light"
NEGATIVE_PROMPT = ""
SEED = 1234
CFG_SCALE = 7.0
SAMPLER = "Euler"


@dataclass(frozen=True)
class Case:
    """One model at one size. `family`/`size` name the random checkpoint to build when `checkpoint` is None."""

    name: str
    family: str
    size: str
    width: int
    height: int
    steps: int
    checkpoint: str | None = None

    @property
    def is_sdxl(self) -> bool:
        return self.family.startswith("sdxl")

    def describe(self) -> str:
        return f"{self.name} {self.width}×{self.height}, {self.steps} steps"


def cuda_cases(steps: int | None = None) -> list[Case]:
    """The issue's benchmark: SD1.5 at 512² and SDXL at 1024², 20 steps."""
    return [
        Case("SD1.5", "sd1", "full", 512, 512, steps or 20),
        Case("SDXL", "sdxl", "full", 1024, 1024, steps or 20),
    ]


def cpu_cases(steps: int | None = None) -> list[Case]:
    """Without CUDA: the tiny models at 64², and real-size SD1.5 at 256² for 2 steps (a 512² SDXL step alone
    takes minutes on a small CPU)."""
    return [
        Case("tiny SD1", "sd1", "tiny", 64, 64, steps or 20),
        Case("tiny SDXL", "sdxl", "tiny", 64, 64, steps or 20),
        Case("SD1.5", "sd1", "full", 256, 256, steps or 2),
    ]


def quick_cases(steps: int | None = None) -> list[Case]:
    """A smoke run for tests: the tiny SD1 model only."""
    return [Case("tiny SD1", "sd1", "tiny", 64, 64, steps or 4)]


def with_checkpoints(cases: list[Case], checkpoints: dict[str, str]) -> list[Case]:
    """Replace the random model of a family ("sd1", "sdxl") by the user's checkpoint of that family."""
    out = []
    for case in cases:
        path = checkpoints.get("sdxl" if case.is_sdxl else "sd1")
        if path and case.size == "full":
            case = Case(case.name, case.family, case.size, case.width, case.height, case.steps, checkpoint=path)
        out.append(case)
    return out
