"""The output panel's 💾 Save and 🗃️ Zip (a1111-spec §1.4): copy shown images into `outdir_save` (log/images)
with their infotexts, append a row to log.csv, and optionally pack them into a zip.

Pure core: the generation's `Processed.js()` JSON and the images come in; file paths and a message go out.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from types import SimpleNamespace
from typing import Any

from PIL import Image

from modules import images, images_naming, infotext_utils, paths_internal
from modules.errors import UserError
from modules.fileio import atomic_file

LOG_FIELDS = ["prompt", "seed", "width", "height", "sampler", "cfgs", "steps", "filename", "negative_prompt",
              "sd_model_name", "sd_model_hash"]
DEFAULT_ZIP_PATTERN = "[datetime]_[[model_name]]_[seed]-[seed_last]"


def _generation(js_data: str) -> dict[str, Any]:
    try:
        data = json.loads(js_data or "")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UserError("Nothing to save: generate images first.")
    return data


def _append_log_row(path: str, row: list[Any]) -> None:
    """log.csv gets a header when new; the file is rewritten whole (atomically) so a crash never truncates it."""
    previous = ""
    if os.path.isfile(path):
        with open(path, encoding="utf8", newline="") as f:
            previous = f.read()
    with atomic_file(path, "w", encoding="utf8", newline="") as f:
        f.write(previous)
        writer = csv.writer(f)
        if not previous:
            writer.writerow(LOG_FIELDS)
        writer.writerow(row)


def save_files(js_data: str, pictures: list[Image.Image], do_make_zip: bool, index: int, opts: Any) -> tuple[
        list[str], str]:
    """Save `pictures` (the gallery, grid first when there is one) and return (written files, "Saved: name").

    With save_selected_only, only the selected picture (`index`, -1 = none) is saved unless it is the grid.
    """
    data = _generation(js_data)
    if not pictures:
        raise UserError("Nothing to save: the gallery is empty.")
    p = SimpleNamespace(**data)
    infotexts = list(data.get("infotexts") or [])
    first_image = int(data.get("index_of_first_image", 0))
    start_index = 0
    if index > -1 and opts.save_selected_only and index >= first_image:
        pictures = [pictures[index]]
        start_index = index

    path = paths_internal.data_relative(opts.outdir_save)
    os.makedirs(path, exist_ok=True)
    filenames, fullfns, parsed = [], [], []
    for image_index, picture in enumerate(pictures, start_index):
        text = infotexts[image_index] if image_index < len(infotexts) else (infotexts[0] if infotexts else "")
        parsed.append(infotext_utils.parse_generation_parameters(text))
        p.batch_index = image_index - 1
        fullfn, txt_fullfn = images.save_image(
            picture, path, "", seed=data.get("all_seeds", [None])[-1], prompt=data.get("all_prompts", [""])[-1],
            extension=opts.samples_format, info=text, grid=image_index < first_image, p=p,
            save_to_dirs=opts.use_save_to_dirs_for_ui, opts=opts)
        filenames.append(os.path.relpath(fullfn, path))
        fullfns.append(fullfn)
        if txt_fullfn:
            filenames.append(os.path.basename(txt_fullfn))
            fullfns.append(txt_fullfn)

    if opts.save_write_log_csv:
        first = parsed[0]
        _append_log_row(os.path.join(path, "log.csv"), [
            first.get("Prompt", ""), first.get("Seed", ""), data.get("width"), data.get("height"),
            data.get("sampler_name"), data.get("cfg_scale"), data.get("steps"), filenames[0],
            first.get("Negative prompt", ""), data.get("sd_model_name"), data.get("sd_model_hash")])

    if do_make_zip:
        seeds = data.get("all_seeds") or [data.get("seed")]
        zip_seed = seeds[index - 1] if len(pictures) == 1 and 0 < index <= len(seeds) else seeds[0]
        prompts = data.get("all_prompts") or [data.get("prompt", "")]
        namegen = images_naming.FilenameGenerator(p, zip_seed, prompts[0], pictures[0], zip=True, opts=opts)
        zip_name = namegen.apply(opts.grid_zip_filename_pattern or DEFAULT_ZIP_PATTERN)
        zip_path = os.path.join(path, f"{zip_name}.zip")
        with atomic_file(zip_path, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            for fullfn in fullfns:
                archive.write(fullfn, os.path.basename(fullfn))
        fullfns.insert(0, zip_path)
    return fullfns, f"Saved: {filenames[0]}"
