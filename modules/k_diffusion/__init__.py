"""k-diffusion-compatible samplers, schedules and denoiser wrappers, written for this project.

A1111 extensions import `k_diffusion.sampling` / `k_diffusion.external`; the app registers this package under
that top-level name (modules/paths.py), so everything inside uses relative imports only.
"""

from . import external, sampling, utils

__all__ = ["external", "sampling", "utils"]
