"""Where scripts that save their own grids and results put them, and whether the job wants files at all."""

from __future__ import annotations

from dataclasses import dataclass

from modules import paths_internal
from modules.shared import opts


@dataclass(frozen=True)
class SaveWishes:
    """What the job asked for before a script switched off saving in its inner passes (API `save_images=false`
    sets both do_not_save flags; A1111's scripts save regardless, these scripts honour it)."""

    samples: bool
    grid: bool


def prepare(p) -> SaveWishes:
    """Fill in the default output folders (as process_images does) and remember the save flags."""
    img2img = hasattr(p, "init_images")
    if p.outpath_samples is None:
        p.outpath_samples = opts.outdir_samples or (opts.outdir_img2img_samples if img2img
                                                    else opts.outdir_txt2img_samples)
    if p.outpath_grids is None:
        p.outpath_grids = opts.outdir_grids or (opts.outdir_img2img_grids if img2img else opts.outdir_txt2img_grids)
    p.outpath_samples = paths_internal.data_relative(p.outpath_samples)
    p.outpath_grids = paths_internal.data_relative(p.outpath_grids)
    return SaveWishes(samples=opts.samples_save and not p.do_not_save_samples,
                      grid=opts.grid_save and not p.do_not_save_grid)
