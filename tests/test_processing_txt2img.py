"""txt2img through processing.process_images on the tiny checkpoints: results, files, and bad input."""

from __future__ import annotations

import pytest
from PIL import Image

from modules import processing, shared
from modules.errors import NotFoundError, UserError


def make(**kw) -> processing.StableDiffusionProcessingTxt2Img:
    args = dict(prompt="a cat", sampler_name="Euler a", steps=2, width=64, height=64, seed=3,
                do_not_save_samples=True, do_not_save_grid=True)
    args.update(kw)
    return processing.StableDiffusionProcessingTxt2Img(**args)


def test_result_carries_images_infotexts_and_seeds(sd1):
    res = processing.process_images(make(batch_size=2, n_iter=2, seed=100))
    assert len(res.images) == 4 and all(im.size == (64, 64) for im in res.images)
    assert res.all_seeds == [100, 101, 102, 103]
    assert [t.splitlines()[-1].split("Seed: ")[1].split(",")[0] for t in res.infotexts] == ["100", "101", "102", "103"]


def test_files_are_saved_with_a1111_names(sd1, tmp_path):
    p = make(do_not_save_samples=False, outpath_samples=str(tmp_path), seed=55, prompt="red fox")
    shared.opts.save_to_dirs = False
    try:
        res = processing.process_images(p)
    finally:
        shared.opts.save_to_dirs = True
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 1 and files[0].name == "00000-55-red fox.png"
    with Image.open(files[0]) as im:
        assert im.info["parameters"] == res.infotexts[0]


@pytest.mark.parametrize("kw,message", [
    ({"width": 0}, "Width must be between"),
    ({"width": 100000}, "Width must be between"),
    ({"height": 0}, "Height must be between"),
    ({"steps": 0}, "Sampling steps must be at least 1"),
    ({"steps": -5}, "Sampling steps must be at least 1"),
    ({"sampler_name": "Nope"}, "Sampler 'Nope' not found"),
])
def test_bad_parameters_are_refused_with_one_message(sd1, kw, message):
    with pytest.raises(UserError, match=message):
        processing.process_images(make(**kw))
    # the next job works
    assert len(processing.process_images(make()).images) == 1


def test_ten_thousand_character_prompt_is_chunked_not_refused(sd1):
    prompt = ("masterpiece, " * 800)[:10000]
    res = processing.process_images(make(prompt=prompt))
    assert res.images[0].size == (64, 64)


def test_unknown_checkpoint_title_is_refused_and_model_kept(sd1):
    before = shared.sd_model
    with pytest.raises(NotFoundError, match="not found"):
        processing.process_images(make(override_settings={"sd_model_checkpoint": "does-not-exist [0123456789]"}))
    assert shared.sd_model is before


def test_override_settings_apply_for_one_job_and_are_restored(sd1):
    shared.opts.CLIP_stop_at_last_layers = 1
    res = processing.process_images(make(override_settings={"CLIP_stop_at_last_layers": 2}))
    assert "Clip skip: 2" in res.infotexts[0]
    assert shared.opts.CLIP_stop_at_last_layers == 1


def test_legacy_combined_sampler_name_is_split(sd1):
    res = processing.process_images(make(sampler_name="DPM++ 2M Karras"))
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in res.infotexts[0]


def test_override_of_a_setting_never_set_restores_its_default(sd1):
    shared.opts.data.pop("eta_noise_seed_delta", None)
    processing.process_images(make(override_settings={"eta_noise_seed_delta": 31337}))
    assert "eta_noise_seed_delta" not in shared.opts.data
    assert shared.opts.eta_noise_seed_delta == shared.opts.data_labels["eta_noise_seed_delta"].default
