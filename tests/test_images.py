"""Saving images (names, infotext chunks, atomic writes), reading infotext back, grids and labels."""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image, PngImagePlugin

from modules import images_naming
from modules.images import (
    FilenameGenerator,
    FilenameRules,
    GridAnnotation,
    ImageSaveError,
    draw_grid_annotations,
    draw_prompt_matrix,
    get_next_sequence_number,
    grid_layout,
    image_grid,
    read_info_from_image,
    sanitize_filename_part,
    save_image,
)
from modules.styles import PromptStyle, StyleDatabase
from tests.opts_defaults import make_opts

NOW = datetime.datetime(2024, 5, 6, 7, 8, 9)
INFOTEXT = "a cat, café\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 64x32"
NON_LATIN1 = "猫と犬, (masterpiece:1.2)\nNegative prompt: 低品質\nSteps: 20, Sampler: Euler a, Seed: 1"


def make_image(width: int = 64, height: int = 32, color=(200, 30, 60)) -> Image.Image:
    return Image.new("RGB", (width, height), color)


def make_p(**kw) -> SimpleNamespace:
    values = {
        "steps": 20,
        "cfg_scale": 7.0,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Automatic",
        "styles": ["quality", "None"],
        "sd_model_hash": "6ce0161689",
        "sd_model_name": "v1-5-pruned-emaonly",
        "batch_size": 2,
        "n_iter": 1,
        "batch_index": 1,
        "iteration": 0,
        "all_seeds": [10, 11],
        "prompt": "a cat, best quality",
        "negative_prompt": "ugly",
        "denoising_strength": 0.5,
        "user": "alice",
        "sd_vae_name": "vae-ft-mse.safetensors",
    }
    values.update(kw)
    return SimpleNamespace(**values)


def files_in(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


# ---- names ----


def test_default_names_with_date_folder(tmp_path):
    opts = make_opts()
    first, txt = save_image(make_image(), str(tmp_path), "", 1234, "a cat", info=INFOTEXT, opts=opts, now=NOW)
    second, _ = save_image(make_image(), str(tmp_path), "", 1235, "a cat", info=INFOTEXT, opts=opts, now=NOW)
    assert first == str(tmp_path / "2024-05-06" / "00000-1234.png")
    assert second == str(tmp_path / "2024-05-06" / "00001-1235.png")
    assert txt is None
    assert files_in(tmp_path) == ["2024-05-06/00000-1234.png", "2024-05-06/00001-1235.png"]


def test_names_without_folders_carry_the_prompt(tmp_path):
    opts = make_opts(save_to_dirs=False)
    fullfn, _ = save_image(make_image(), str(tmp_path), "", 42, "a cat: on/a mat?", opts=opts, now=NOW)
    assert os.path.basename(fullfn) == "00000-42-a cat_ on_a mat_.png"


def test_grid_names(tmp_path):
    opts = make_opts()
    fullfn, _ = save_image(
        make_image(), str(tmp_path), "grid", 1, "x", short_filename=True, grid=True, opts=opts, now=NOW
    )
    assert fullfn == str(tmp_path / "2024-05-06" / "grid-0000.png")


def test_custom_patterns_and_numbering_off(tmp_path):
    opts = make_opts(
        directories_filename_pattern="[model_name]/[sampler]",
        samples_filename_pattern="[seed]-[steps]",
        save_images_add_number=False,
    )
    fullfn, _ = save_image(make_image(), str(tmp_path), "", 7, "x", p=make_p(), opts=opts, now=NOW)
    assert fullfn == str(tmp_path / "v1-5-pruned-emaonly" / "DPM++ 2M" / "7-20.png")


def test_all_tags(tmp_path):
    styles = StyleDatabase(tmp_path / "styles.csv")
    styles.styles["quality"] = PromptStyle("quality", "best quality", "", None)
    p = make_p()
    gen = FilenameGenerator(p, 11, p.prompt, make_image(), opts=make_opts(), styles=styles, now=NOW)
    prompt_hash = hashlib.sha256(b"a cat, best quality").hexdigest()
    image_hash = hashlib.sha256(make_image().tobytes()).hexdigest()
    full_hash = hashlib.sha256(b"a cat, best quality ugly").hexdigest()

    cases = {
        "[seed]-[seed_first]-[seed_last]": "11-10-11",
        "[steps]-[cfg]-[width]x[height]": "20-7.0-64x32",
        "[styles]|[sampler]|[sampler_scheduler]|[scheduler]": "quality|DPM++ 2M|DPM++ 2M Karras|Karras",
        "[model_hash] [model_name]": "6ce0161689 v1-5-pruned-emaonly",
        "[date] [datetime] [datetime<%H-%M>] [job_timestamp]": "2024-05-06 20240506070809 07-08 20240506070809",
        "[prompt_hash] [prompt_hash<4>] [negative_prompt_hash<3>]": f"{prompt_hash[:8]} {prompt_hash[:4]} "
        + hashlib.sha256(b"ugly").hexdigest()[:3],
        "[full_prompt_hash<6>] [image_hash<5>]": f"{full_hash[:6]} {image_hash[:5]}",
        "[prompt] [prompt_spaces] [prompt_no_styles]": "a_cat,_best_quality a cat, best quality a cat",
        "[batch_number]-[batch_size]-[generation_number]": "2-2-2",
        "[hasprompt<cat|nocat><dog|nodog><bird>]": "catnodog",
        "[clip_skip] [denoising] [user] [vae_filename] x[none]x": "1 0.5 alice vae-ft-mse xx",
        "[SEED] [unknown] [datetime<>]": "11 [unknown] 20240506070809",
    }
    for pattern, expected in cases.items():
        assert gen.apply(pattern) == expected, pattern


def test_tags_that_skip_the_text_before_them():
    p = make_p(batch_size=1, n_iter=1, denoising_strength=None, all_seeds=[5])
    gen = FilenameGenerator(p, 5, "x", make_image(), opts=make_opts(), now=NOW)
    assert gen.apply("[seed]-[seed_last]-[batch_number]-[generation_number]-[denoising].") == "5."
    assert gen.apply("[seed_first]") == "5"


def test_tags_without_processing_object_stay_as_written():
    gen = FilenameGenerator(None, 1, "a cat", make_image(), opts=make_opts(), now=NOW)
    assert gen.apply("[seed]-[steps]-[sampler]-[vae_filename]") == "1-[steps]-[sampler]-NoneType"
    assert gen.apply("[seed_first]") == "[seed_first]"


def test_prompt_words():
    gen = FilenameGenerator(None, 1, "a cat, (best:1.2) quality! in/the rain", make_image(), opts=make_opts())
    assert gen.apply("[prompt_words]") == "a cat best 1 2 quality in the"
    assert FilenameGenerator(None, 1, ",,,", make_image(), opts=make_opts()).apply("[prompt_words]") == "empty"


def test_datetime_time_zone():
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo("Asia/Tokyo")
    except ZoneInfoNotFoundError:
        pytest.skip("no time zone database on this machine")
    now = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
    gen = FilenameGenerator(None, 1, "x", make_image(), opts=make_opts(), now=now)
    assert gen.apply("[datetime<%H><Asia/Tokyo>]") == "16"
    assert gen.apply("[datetime<%H><No/Such_Zone>]") == now.astimezone().strftime("%H")


def test_sanitize_filename_part():
    assert sanitize_filename_part(' <a:b>/c\\d|e?f*g"h#\n. ') == "__a_b__c_d_e_f_g_h__._"
    assert sanitize_filename_part(" a b. ", replace_spaces=False) == "a b"
    assert sanitize_filename_part("x" * 200) == "x" * 128
    assert sanitize_filename_part(None) is None
    unix = FilenameRules(max_length=10, unix=True)
    assert sanitize_filename_part("a:b|c/d?e*fgh", replace_spaces=False, rules=unix) == "a:b|c_d?e*"


def test_filename_rules_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr(images_naming, "filename_rules", FilenameRules(max_length=5))
    fullfn, _ = save_image(make_image(), str(tmp_path), "", 1, "abcdefgh", opts=make_opts(save_to_dirs=False))
    assert os.path.basename(fullfn) == "00000-1-abcde.png"


def test_get_next_sequence_number(tmp_path):
    for name in ["00003-1.png", "00010-x.png", "grid-0004.png", "notes.txt", "abc-5.png", "00002.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert get_next_sequence_number(str(tmp_path), "") == 11
    assert get_next_sequence_number(str(tmp_path), "grid") == 5
    assert get_next_sequence_number(str(tmp_path), "other") == 0


def test_long_names_fit_the_file_system(tmp_path):
    opts = make_opts(save_to_dirs=False, save_txt=True)
    rules = FilenameRules(max_length=1000)
    fullfn, txt = save_image(make_image(), str(tmp_path), "", 1, "猫" * 200, info="x", opts=opts, rules=rules)
    name_max = os.statvfs(tmp_path).f_namemax
    assert len(os.path.basename(fullfn).encode()) <= name_max
    assert os.path.basename(fullfn).startswith("00000-1-猫猫")
    assert Path(txt).read_text(encoding="utf-8") == "x\n"


# ---- infotext in files ----


@pytest.mark.parametrize("extension", ["png", "jpg", "jpeg", "webp", "avif"])
@pytest.mark.parametrize("info", [INFOTEXT, NON_LATIN1], ids=["latin1", "unicode"])
def test_infotext_round_trip(tmp_path, extension, info):
    fullfn, _ = save_image(make_image(), str(tmp_path), "", 1, "x", extension=extension, info=info, opts=make_opts())
    assert fullfn.endswith(f".{extension}")
    with Image.open(fullfn) as im:
        geninfo, items = read_info_from_image(im)
    assert geninfo == info
    assert "exif" not in items and "parameters" not in items


def test_png_chunk_types(tmp_path):
    latin, _ = save_image(make_image(), str(tmp_path), "", 1, "x", info=INFOTEXT, opts=make_opts())
    unicode, _ = save_image(make_image(), str(tmp_path), "", 2, "x", info=NON_LATIN1, opts=make_opts())
    assert b"tEXtparameters\x00" in Path(latin).read_bytes()
    assert b"iTXtparameters\x00" in Path(unicode).read_bytes()


def test_existing_png_chunks_are_kept(tmp_path):
    existing = {"parameters": "old", "postprocessing": "Postprocess upscale by: 2"}
    fullfn, _ = save_image(
        make_image(), str(tmp_path), "", 1, "x", info="new", existing_info=existing, opts=make_opts()
    )
    with Image.open(fullfn) as im:
        geninfo, items = read_info_from_image(im)
    assert geninfo == "new"
    assert items == {"postprocessing": "Postprocess upscale by: 2"}
    assert existing["parameters"] == "old", "the caller's dict is not modified"


def test_pnginfo_disabled(tmp_path):
    opts = make_opts(enable_pnginfo=False)
    for ext in ("png", "jpg"):
        fullfn, _ = save_image(make_image(), str(tmp_path), "", 1, "x", extension=ext, info=INFOTEXT, opts=opts)
        with Image.open(fullfn) as im:
            assert read_info_from_image(im)[0] is None


def test_gif_comment(tmp_path):
    fullfn, _ = save_image(make_image(), str(tmp_path), "", 1, "x", extension="gif", info=INFOTEXT, opts=make_opts())
    with Image.open(fullfn) as im:
        assert read_info_from_image(im)[0] == INFOTEXT


def test_jpeg_of_rgba_and_16_bit_images(tmp_path):
    rgba = Image.new("RGBA", (16, 16), (1, 2, 3, 128))
    gray16 = Image.new("I;16", (16, 16), 40000)
    for image in (rgba, gray16):
        fullfn, _ = save_image(image, str(tmp_path), "", 1, "x", extension="jpg", info="i", opts=make_opts())
        with Image.open(fullfn) as im:
            assert read_info_from_image(im)[0] == "i"


def test_novelai_metadata_becomes_infotext(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("Description", "masterpiece, 1girl")
    comment = {"uc": "lowres, bad anatomy", "steps": 28, "scale": 11, "seed": 123, "sampler": "k_euler_ancestral"}
    info.add_text("Comment", json.dumps(comment))
    path = tmp_path / "nai.png"
    make_image(512, 768).save(path, pnginfo=info)
    with Image.open(path) as im:
        geninfo, items = read_info_from_image(im)
    assert geninfo == (
        "masterpiece, 1girl\nNegative prompt: lowres, bad anatomy\n"
        "Steps: 28, Sampler: Euler a, CFG scale: 11, Seed: 123, Size: 512x768, Clip skip: 2, ENSD: 31337"
    )
    assert items["Software"] == "NovelAI"


def test_broken_novelai_metadata_is_not_fatal(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("Comment", "{not json")
    path = tmp_path / "nai.png"
    make_image().save(path, pnginfo=info)
    with Image.open(path) as im:
        assert read_info_from_image(im)[0] is None


def test_image_without_info():
    assert read_info_from_image(make_image()) == (None, {})


def test_save_txt_and_already_saved_as(tmp_path):
    image = make_image()
    fullfn, txt = save_image(image, str(tmp_path), "", 1, "x", info=INFOTEXT, opts=make_opts(save_txt=True))
    assert txt == fullfn[: -len(".png")] + ".txt"
    assert Path(txt).read_text(encoding="utf-8") == INFOTEXT + "\n"
    assert image.already_saved_as == fullfn


def test_add_number_suffix_instead_of_replacing(tmp_path):
    opts = make_opts(save_images_replace_action="Add number suffix")
    first, _ = save_image(make_image(), str(tmp_path), "", forced_filename="same", opts=opts)
    second, _ = save_image(make_image(), str(tmp_path), "", forced_filename="same", opts=opts)
    assert (os.path.basename(first), os.path.basename(second)) == ("same.png", "same-1.png")


def test_downscaled_jpeg_copy(tmp_path):
    opts = make_opts(img_downscale_threshold=0, target_side_length=16)
    fullfn, _ = save_image(make_image(64, 32), str(tmp_path), "", 1, "x", info=INFOTEXT, opts=opts)
    jpg = fullfn[: -len(".png")] + ".jpg"
    with Image.open(jpg) as im:
        assert im.size == (16, 8)
        assert read_info_from_image(im)[0] == INFOTEXT


def test_too_large_for_webp_falls_back_to_png(tmp_path):
    fullfn, _ = save_image(make_image(16384, 1), str(tmp_path), "", 1, "x", extension="webp", opts=make_opts())
    assert fullfn.endswith(".png")


# ---- atomic writes and errors ----


def no_temp_files(path: Path) -> bool:
    return not [p for p in path.rglob("*") if p.name.endswith(".tmp")]


def test_no_temporary_file_is_left(tmp_path):
    for ext in ("png", "jpg", "webp"):
        save_image(make_image(), str(tmp_path), "", 1, "x", extension=ext, info=INFOTEXT, opts=make_opts(save_txt=True))
    assert no_temp_files(tmp_path)


def test_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    opts = make_opts(save_to_dirs=False)
    target, _ = save_image(make_image(), str(tmp_path), "", forced_filename="image", info="old", opts=opts)
    before = Path(target).read_bytes()

    def disk_full(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half an image")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(ImageSaveError, match="disk is full") as excinfo:
        save_image(make_image(), str(tmp_path), "", forced_filename="image", info="new", opts=opts)
    assert target in str(excinfo.value)
    assert Path(target).read_bytes() == before
    assert files_in(tmp_path) == ["image.png"]


def test_encoder_failure_leaves_nothing(tmp_path, monkeypatch):
    def broken(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(RuntimeError):
        save_image(make_image(), str(tmp_path), "", 1, "x", opts=make_opts(save_to_dirs=False))
    assert files_in(tmp_path) == []


def test_output_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ImageSaveError, match="Could not save .*file"):
        save_image(make_image(), str(blocker / "out"), "", 1, "x", opts=make_opts())


def test_unwritable_folder(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    from modules import fileio

    monkeypatch.setattr(fileio, "open", denied, raising=False)
    with pytest.raises(ImageSaveError, match="not writable"):
        save_image(make_image(), str(tmp_path), "", 1, "x", opts=make_opts(save_to_dirs=False))
    assert files_in(tmp_path) == []


def test_unknown_format(tmp_path):
    with pytest.raises(ImageSaveError, match="Unknown image format 'xyz'"):
        save_image(make_image(), str(tmp_path), "", 1, "x", extension="xyz", opts=make_opts())
    assert files_in(tmp_path) == []


# ---- grids ----

# (rows, cols) for n = 1..9 images, worked out by hand from A1111's rules.
AUTO = [(1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (2, 3), (3, 3), (3, 3), (3, 3)]  # rows = round(sqrt(n))
NO_EMPTY = [(1, 1), (1, 2), (1, 3), (2, 2), (1, 5), (2, 3), (1, 7), (2, 4), (3, 3)]  # rows divide n
THREE = [(1, 1), (2, 1), (3, 1), (3, 2), (3, 2), (3, 2), (3, 3), (3, 3), (3, 3)]  # rows = min(3, n)
BATCH_2 = [(1, 1), (2, 1), (2, 2), (2, 2), (2, 3), (2, 3), (2, 4), (2, 4), (2, 5)]  # rows = batch size


@pytest.mark.parametrize("n", range(1, 10))
def test_grid_sizes(n):
    imgs = [make_image(8, 6, (i * 20, 0, 0)) for i in range(n)]
    settings = [
        (make_opts(n_rows=-1), AUTO),
        (make_opts(n_rows=-1, grid_prevent_empty_spots=True), NO_EMPTY),
        (make_opts(n_rows=3), THREE),
        (make_opts(n_rows=0), BATCH_2),
    ]
    for opts, table in settings:
        rows, cols = table[n - 1]
        assert grid_layout(n, batch_size=2, opts=opts) == (rows, cols)
        grid = image_grid(imgs, batch_size=2, opts=opts)
        assert grid.size == (cols * 8, rows * 6)
        # image i sits in row i // cols, column i % cols
        last = n - 1
        assert grid.getpixel((last % cols * 8 + 4, last // cols * 6 + 3)) == (last * 20, 0, 0)


def test_grid_explicit_rows_and_centred_small_images():
    big, small = make_image(10, 10, (255, 0, 0)), make_image(4, 4, (0, 255, 0))
    grid = image_grid([big, small], rows=1, opts=make_opts())
    assert grid.size == (20, 10)
    assert grid.getpixel((10 + 5, 5)) == (0, 255, 0)  # centred
    assert grid.getpixel((10 + 1, 1)) == (255, 255, 255)  # background around it


def test_grid_of_nothing():
    with pytest.raises(ValueError):
        image_grid([], opts=make_opts())


def test_prompt_matrix_labels():
    cell = 64
    grid = image_grid([make_image(cell, cell, (0, 0, 255))] * 4, rows=2, opts=make_opts())
    result = draw_prompt_matrix(grid, cell, cell, ["base", "red hat", "blue coat"], opts=make_opts())

    pad_left = cell * 3 // 4
    assert result.width == grid.width + pad_left
    assert result.height > grid.height
    pad_top = result.height - grid.height
    assert result.getpixel((pad_left + 1, pad_top + 1)) == (0, 0, 255)
    label_area = result.crop((pad_left, 0, result.width, pad_top))
    assert len(label_area.getcolors(100000)) > 1, "column labels were drawn"


def test_annotations_with_margin_and_wrong_counts():
    cell = 32
    grid = image_grid([make_image(cell, cell)] * 2, rows=1, opts=make_opts())
    hor = [[GridAnnotation("x")], [GridAnnotation("y", is_active=False)]]
    result = draw_grid_annotations(grid, cell, cell, hor, [[]], margin=5, opts=make_opts())
    assert result.width == grid.width + 5
    assert hor[1][0].text == "y", "inputs are not rewritten"
    with pytest.raises(ValueError, match="horizontal texts"):
        draw_grid_annotations(grid, cell, cell, hor[:1], [[]], opts=make_opts())
