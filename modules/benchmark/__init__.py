"""`python -m modules.benchmark`: sampler it/s, seconds per image, peak VRAM, load/switch and compile times of this
program's pipeline next to plain eager diffusers on the same weights; results are appended to BENCHMARKS.md.

Nothing heavy is imported here: the command line must set the web UI flags before `modules.shared` is imported.
"""
