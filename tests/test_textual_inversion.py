"""Textual-inversion embeddings: every file format, width checks, NaNs, rescans, the vectors' token positions (checked
against the transformers model run with the vectors placed in its token table), and a generation with TI hashes."""

from __future__ import annotations

import copy
import hashlib
import logging
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules import conditioning, devices, processing, sd_models, shared, textual_inversion
from modules.conditioning import BOS_ID, EOS_ID, tokenize_line
from modules.sd_hijack import model_hijack
from modules.textual_inversion import EmbeddingDatabase

WIDTH = 64  # the tiny encoders' width
A, CAT, DOG = 320, 2368, 1929


def vectors(n: int, seed: int, width: int = WIDTH) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def write_a1111(path, vec, **extra) -> None:
    data = {"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, "name": "ignored", **extra}
    torch.save(data, path)


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    shared.opts.sd_checkpoints_limit = 2
    loaded = {
        key: sd_models.load_model(sd_models.find_checkpoint(tiny_checkpoints[key].name)) for key in ("sdxl", "sd1")
    }
    yield loaded
    shared.opts.sd_checkpoints_limit = 1
    sd_models.unload_model_weights()


@pytest.fixture
def sd1(models):
    sd_models.load_model(models["sd1"].sd_checkpoint_info)
    return models["sd1"]


@pytest.fixture
def emb_dir(tmp_path):
    """The global embedding database reading only a fresh folder for one test."""
    db = model_hijack.embedding_db
    saved = dict(db.embedding_dirs)
    db.clear_embedding_dirs()
    folder = tmp_path / "embeddings"
    folder.mkdir()
    db.add_embedding_dir(str(folder))
    yield folder
    db.embedding_dirs.clear()
    db.embedding_dirs.update(saved)
    db.load_textual_inversion_embeddings(force_reload=True)


def sha12(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()[:12]


# -- formats --------------------------------------------------------------------------------------------------------


def test_every_format_loads(sd1, emb_dir):
    write_a1111(emb_dir / "a1111.pt", vectors(3, 1), step=120, sd_checkpoint="0123abcd", sd_checkpoint_name="tiny")
    torch.save({"<concept>": vectors(1, 2)[0]}, emb_dir / "concept.bin")  # diffusers: one 1-D vector
    # the original implementation's files keep a ParameterDict
    params = torch.nn.ParameterDict({"*": torch.nn.Parameter(vectors(2, 9))})
    torch.save({"string_to_token": {"*": 265}, "string_to_param": params, "step": 7}, emb_dir / "original.pt")
    sub = emb_dir / "sub" / "deeper"
    sub.mkdir(parents=True)
    save_file({"emb_params": vectors(2, 3)}, sub / "kohya.safetensors")
    save_file({"clip_l": vectors(2, 4), "clip_g": vectors(2, 5)}, emb_dir / "xl.safetensors")
    torch.save({"string_to_param": {"*": vectors(1, 6, width=32)}}, emb_dir / "narrow.pt")
    (emb_dir / "a1111.preview.png").write_bytes(b"not an embedding")
    (emb_dir / "empty.pt").write_bytes(b"")

    listing = model_hijack.embedding_db.listing()
    assert listing["loaded"] == {
        "a1111": {"step": 120, "sd_checkpoint": "0123abcd", "sd_checkpoint_name": "tiny", "shape": 64, "vectors": 3},
        "concept": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 64, "vectors": 1},
        "kohya": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 64, "vectors": 2},
        "original": {"step": 7, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 64, "vectors": 2},
    }
    assert set(listing["skipped"]) == {"xl", "narrow"}
    assert listing["skipped"]["xl"]["shape"] == 128
    db = model_hijack.embedding_db
    assert (
        db.skipped_embeddings["narrow"].skip_reason
        == "its vectors are 32 wide; the loaded model's text encoders take 64"
    )
    assert "clip_l 64 + clip_g 64" in db.skipped_embeddings["xl"].skip_reason
    assert torch.equal(db.word_embeddings["a1111"].vec, vectors(3, 1))
    assert torch.equal(db.word_embeddings["original"].vec, vectors(2, 9))
    assert db.word_embeddings["kohya"].shorthash == sha12(sub / "kohya.safetensors")
    assert db.expected_shape == 64


def test_sdxl_takes_sdxl_embeddings_only(models, emb_dir):
    sd_models.load_model(models["sdxl"].sd_checkpoint_info)
    save_file({"clip_l": vectors(2, 4), "clip_g": vectors(2, 5)}, emb_dir / "xl.safetensors")
    write_a1111(emb_dir / "sd1style.pt", vectors(1, 1))
    listing = model_hijack.embedding_db.listing()
    assert list(listing["loaded"]) == ["xl"] and listing["loaded"]["xl"]["shape"] == 128
    assert list(listing["skipped"]) == ["sd1style"]
    # switching the model rescans with the new widths
    sd_models.load_model(models["sd1"].sd_checkpoint_info)
    listing = model_hijack.embedding_db.listing()
    assert list(listing["loaded"]) == ["sd1style"] and list(listing["skipped"]) == ["xl"]


def test_nan_embedding_is_refused_with_one_warning(sd1, emb_dir, caplog):
    bad = vectors(2, 1)
    bad[1, 3] = float("nan")
    write_a1111(emb_dir / "broken.pt", bad)
    (emb_dir / "garbage.pt").write_bytes(b"PK\x03\x04 this is not a zip")
    db = model_hijack.embedding_db
    with caplog.at_level(logging.WARNING):
        db.load_textual_inversion_embeddings(force_reload=True)
        db.load_textual_inversion_embeddings(force_reload=True)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in messages if "broken.pt" in m]) == 1
    assert "NaN" in next(m for m in messages if "broken.pt" in m)
    assert len([m for m in messages if "garbage.pt" in m]) == 1
    assert "broken" in db.skipped_embeddings and "broken" not in db.word_embeddings
    # the word is then plain text
    with torch.no_grad():
        z = sd1.get_learned_conditioning(["a broken cat"])
    assert torch.isfinite(z).all()


def test_too_many_vectors_are_refused(sd1, emb_dir):
    write_a1111(emb_dir / "huge.pt", vectors(76, 1))
    model_hijack.embedding_db.load_textual_inversion_embeddings(force_reload=True)
    assert "at most 75" in model_hijack.embedding_db.skipped_embeddings["huge"].skip_reason


def test_rescan_when_a_file_changes_in_a_subfolder(sd1, emb_dir):
    db = model_hijack.embedding_db
    sub = emb_dir / "sub"
    sub.mkdir()
    write_a1111(sub / "changing.pt", vectors(1, 1))
    db.load_textual_inversion_embeddings()
    version = db.version
    db.load_textual_inversion_embeddings()
    assert db.version == version  # nothing changed: no reload
    write_a1111(sub / "changing.pt", vectors(2, 2))
    os.utime(sub / "changing.pt", ns=(1, 2_000_000_000_000_000_000))
    db.load_textual_inversion_embeddings()
    assert db.version > version and db.word_embeddings["changing"].vectors == 2
    (sub / "changing.pt").unlink()
    db.load_textual_inversion_embeddings()
    assert "changing" not in db.word_embeddings


def test_hidden_folders_follow_list_hidden_files(sd1, emb_dir, monkeypatch):
    hidden = emb_dir / ".hidden"
    hidden.mkdir()
    write_a1111(hidden / "secret.pt", vectors(1, 1))
    db = model_hijack.embedding_db
    db.load_textual_inversion_embeddings(force_reload=True)
    assert "secret" in db.word_embeddings
    monkeypatch.setitem(shared.opts.data, "list_hidden_files", False)
    db.load_textual_inversion_embeddings()
    assert "secret" not in db.word_embeddings


def test_names_sorted_and_module_alias(emb_dir):
    db = EmbeddingDatabase()
    db.add_embedding_dir(str(emb_dir))
    for name in ("beta", "Alpha", "gamma"):
        write_a1111(emb_dir / f"{name}.pt", vectors(1, 1))
    db.load_textual_inversion_embeddings()
    assert list(db.word_embeddings) == ["Alpha", "beta", "gamma"]
    import modules.textual_inversion.textual_inversion as a1111_path

    assert a1111_path is textual_inversion


def test_unknown_format_is_a_clear_error():
    with pytest.raises(Exception, match="not recognised as a textual-inversion embedding"):
        textual_inversion.create_embedding_from_data({"a": 1}, "x")
    with pytest.raises(Exception, match="exactly one tensor"):
        textual_inversion.create_embedding_from_data({"a": torch.zeros(1, 4), "b": torch.zeros(1, 4)}, "x")


# -- where the vectors go -------------------------------------------------------------------------------------------


def encode_with_table(encoder, ids: list[int], rows: dict[int, torch.Tensor], layer: int | None = None):
    """Run a copy of the transformers model whose token table has `rows` replaced: an independent way to feed
    given vectors at given positions."""
    model = copy.deepcopy(encoder.transformer)
    text = model.text_model if hasattr(model, "text_model") else model
    with torch.no_grad():
        for token, vec in rows.items():
            text.embeddings.token_embedding.weight[token] = vec
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.last_hidden_state if layer is None else out.hidden_states[layer]


def test_vectors_land_at_their_token_positions(sd1, emb_dir):
    vec = vectors(3, 7)
    write_a1111(emb_dir / "myemb.pt", vec)
    model_hijack.embedding_db.load_textual_inversion_embeddings()
    encoder = sd1.cond_stage_model.encoders[0]
    ((c,),), _ = encoder.process_texts(["a (myemb:1.5) cat"], model_hijack.embedding_db)
    assert c.tokens[:7] == [BOS_ID, A, 0, 0, 0, CAT, EOS_ID]
    assert c.multipliers[:6] == pytest.approx([1.0, 1.0, 1.5, 1.5, 1.5, 1.0])
    assert [(fix.offset, fix.embedding.name) for fix in c.fixes] == [(1, "myemb")]

    with torch.no_grad():
        z = sd1.get_learned_conditioning(["a myemb cat"])
    x = [1000, 1001, 1002]  # token-table rows that take the vectors in the independent run
    expected = encode_with_table(encoder, [BOS_ID, A, *x, CAT] + [EOS_ID] * 71, dict(zip(x, vec, strict=True)))
    assert (z - expected).abs().max().item() < 1e-6
    plain = sd1.get_learned_conditioning(["a cat"])
    assert (z[:, :2] - plain[:, :2]).abs().max() < 1e-6  # the causal encoder: tokens before are unchanged
    assert (z[:, 2:5] - plain[:, 2:5]).abs().max() > 1e-3


def test_an_embedding_never_straddles_chunks(sd1, emb_dir):
    write_a1111(emb_dir / "myemb.pt", vectors(3, 7))
    model_hijack.embedding_db.load_textual_inversion_embeddings()
    chunks, count = sd1.cond_stage_model.encoders[0].tokenize_line("a " * 73 + "myemb", model_hijack.embedding_db)
    assert chunks[0].tokens[1:76] == [A] * 73 + [EOS_ID] * 2 and not chunks[0].fixes
    assert chunks[1].tokens[:5] == [BOS_ID, 0, 0, 0, EOS_ID]
    assert [fix.offset for fix in chunks[1].fixes] == [0]
    assert count == 78


def test_longest_name_wins(sd1, emb_dir):
    write_a1111(emb_dir / "style.pt", vectors(1, 1))
    write_a1111(emb_dir / "style-large.pt", vectors(2, 2))
    model_hijack.embedding_db.load_textual_inversion_embeddings()
    chunks, _ = tokenize_line("style-large style", model_hijack.embedding_db)
    assert [fix.embedding.name for fix in chunks[0].fixes] == ["style-large", "style"]
    assert [fix.offset for fix in chunks[0].fixes] == [0, 2]


def test_sdxl_embedding_feeds_both_encoders(models, emb_dir):
    model = models["sdxl"]
    sd_models.load_model(model.sd_checkpoint_info)
    clip_l, clip_g = vectors(2, 4), vectors(2, 5)
    save_file({"clip_l": clip_l, "clip_g": clip_g}, emb_dir / "xl.safetensors")
    model_hijack.embedding_db.load_textual_inversion_embeddings()
    with torch.no_grad():
        c = model.get_learned_conditioning(["xl dog"])
    enc_l, enc_g = model.cond_stage_model.encoders
    x = [1000, 1001]
    ids = [BOS_ID, *x, DOG, EOS_ID]
    expected_l = encode_with_table(enc_l, ids + [EOS_ID] * 72, dict(zip(x, clip_l, strict=True)), layer=-2)
    expected_g = encode_with_table(enc_g, ids + [0] * 72, dict(zip(x, clip_g, strict=True)), layer=-2)
    assert (c["crossattn"] - torch.cat([expected_l, expected_g], dim=-1)).abs().max().item() < 1e-6


# -- generation -----------------------------------------------------------------------------------------------------


def generate(prompt: str, **kwargs):
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=prompt,
        steps=1,
        width=64,
        height=64,
        sampler_name="Euler",
        seed=5,
        cfg_scale=7.0,
        do_not_save_samples=True,
        do_not_save_grid=True,
        **kwargs,
    )
    res = processing.process_images(p)
    return np.asarray(res.images[0], dtype=np.int16), res.infotexts[0]


def test_generation_with_an_embedding(sd1, emb_dir):
    plain_image, plain_info = generate("a myemb cat")  # no such embedding yet: the word is text
    assert "TI hashes" not in plain_info
    path = emb_dir / "myemb.pt"
    write_a1111(path, vectors(3, 7) * 5)
    image, info = generate("a myemb cat")  # the new file is found before generating; the cached cond is not reused
    assert f'TI hashes: "myemb: {sha12(path)}"' in info
    assert np.abs(image - plain_image).max() > 0
    # do_not_reload_embeddings: a new file is not picked up, so the conditioning comes from the cache: the same
    # image, and the hashes are still in the infotext
    write_a1111(emb_dir / "late.pt", vectors(1, 9))
    again, info_again = generate("a myemb cat", do_not_reload_embeddings=True)
    assert "late" not in model_hijack.embedding_db.word_embeddings
    assert np.array_equal(again, image) and f'TI hashes: "myemb: {sha12(path)}"' in info_again


def test_ti_hashes(sd1, emb_dir, monkeypatch):
    write_a1111(emb_dir / "myemb.pt", vectors(3, 7))
    write_a1111(emb_dir / "neg.pt", vectors(1, 8))
    model_hijack.embedding_db.load_textual_inversion_embeddings()
    emb, neg = sha12(emb_dir / "myemb.pt"), sha12(emb_dir / "neg.pt")
    # the prompts' embeddings first, each once; schedules are expanded (neg only appears after step 10)
    params = conditioning.infotext_params(sd1, ["a myemb, myemb", "[x:neg:10]"], ["neg"], 20)
    assert params == {"TI hashes": f"neg: {neg}, myemb: {emb}"}
    assert conditioning.infotext_params(sd1, ["[x:neg:10]"], [""], 5) == {}
    monkeypatch.setitem(shared.opts.data, "textual_inversion_add_hashes_to_infotext", False)
    assert conditioning.infotext_params(sd1, ["myemb"], [""], 20) == {}
