"""Prompt styles against the A1111 parity data (tests/fixtures/styles.json) and the styles.csv file format."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from modules import styles as styles_module
from modules.styles import PromptStyle, StyleDatabase, StylesFileError

FIXTURES = Path(__file__).parent / "fixtures"
DATA = json.loads((FIXTURES / "styles.json").read_text(encoding="utf-8"))


def write_csv(path: Path, rows: list[tuple[str, str, str]], header: str = "name,prompt,negative_prompt") -> None:
    """A styles.csv as A1111 writes it: UTF-8 with BOM, CRLF rows, quoted fields."""
    lines = [header] + [",".join(f'"{v}"' for v in row) for row in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8-sig"))


@pytest.fixture
def parity_db(tmp_path) -> StyleDatabase:
    path = tmp_path / "styles.csv"
    write_csv(path, [(s["name"], s["prompt"], s["negative_prompt"]) for s in DATA["styles"]])
    return StyleDatabase(path)


def test_parity_styles_load_from_csv(parity_db):
    assert [(s.name, s.prompt, s.negative_prompt) for s in parity_db.styles.values()] == [
        (s["name"], s["prompt"], s["negative_prompt"]) for s in DATA["styles"]
    ]


@pytest.mark.parametrize("case", DATA["apply_cases"], ids=lambda c: f"{c['prompt'][:20]}-{'+'.join(c['styles'])}")
def test_apply_matches_reference(parity_db, case):
    assert parity_db.apply_styles_to_prompt(case["prompt"], case["styles"]) == case["expected_prompt"]
    negative = parity_db.apply_negative_styles_to_prompt(case["negative_prompt"], case["styles"])
    assert negative == case["expected_negative_prompt"]


@pytest.mark.parametrize("case", DATA["extract_cases"], ids=lambda c: c["prompt"][:30])
def test_extract_matches_reference(parity_db, case):
    found, prompt, negative = parity_db.extract_styles_from_prompt(case["prompt"], case["negative_prompt"])
    assert found == case["expected_styles"]
    assert prompt == case["expected_prompt"]
    assert negative == case["expected_negative_prompt"]


def test_apply_then_extract_round_trip(parity_db):
    prompt = parity_db.apply_styles_to_prompt("a fox", ["photo", "quality"])
    negative = parity_db.apply_negative_styles_to_prompt("blurry", ["photo", "quality"])
    assert parity_db.extract_styles_from_prompt(prompt, negative) == (["photo", "quality"], "a fox", "blurry")


def test_old_format_dividers_and_odd_rows(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text('name,text\n"# Portraits",\nwarm,"warm light, {prompt}"\n,orphan\n', encoding="utf-8")
    db = StyleDatabase(path)
    assert list(db.styles) == ["# Portraits", "warm"]
    assert db.styles["warm"] == PromptStyle("warm", "warm light, {prompt}", "", str(path))
    assert db.styles["# Portraits"].is_divider
    # A divider contributes nothing and is never extracted.
    assert db.apply_styles_to_prompt("x", ["# Portraits", "warm"]) == "warm light, x"
    assert db.extract_styles_from_prompt("warm light, x", "") == (["warm"], "x", "")


def test_several_files_with_wildcards(tmp_path):
    write_csv(tmp_path / "styles.csv", [("a", "A", "")])
    write_csv(tmp_path / "extra-1.csv", [("b", "B", "nb")])
    write_csv(tmp_path / "extra-2.csv", [("c", "C", "")])
    db = StyleDatabase([tmp_path / "styles.csv", str(tmp_path / "extra-*.csv")])

    assert db.default_path == tmp_path / "styles.csv"
    assert db.all_styles_files == [tmp_path / "styles.csv", tmp_path / "extra-1.csv", tmp_path / "extra-2.csv"]
    names = list(db.styles)
    assert names[0] == " STYLES ".center(40, "-") and db.styles[names[0]].is_divider
    assert [n for n in names if not db.styles[n].is_divider] == ["a", "b", "c"]
    assert db.styles["b"].path == str(tmp_path / "extra-1.csv")


def test_wildcard_first_path_picks_the_first_match(tmp_path):
    write_csv(tmp_path / "s1.csv", [("a", "A", "")])
    db = StyleDatabase(str(tmp_path / "s*.csv"))
    assert db.default_path == tmp_path / "s1.csv"
    assert list(db.styles) == ["a"]

    empty = StyleDatabase(str(tmp_path / "none*.csv"))
    assert empty.default_path == tmp_path / "styles.csv" and empty.styles == {}


def test_missing_file_is_an_empty_database(tmp_path):
    db = StyleDatabase(tmp_path / "nothing.csv")
    assert db.styles == {}
    assert db.apply_styles_to_prompt("a cat", ["anything"]) == "a cat"


def test_save_reload_round_trip_and_bak(tmp_path):
    main, extra = tmp_path / "styles.csv", tmp_path / "more.csv"
    write_csv(main, [("# Section", "", ""), ("quality", "masterpiece", "lowres")])
    write_csv(extra, [("other", "x, {prompt}", "")])
    old_main = main.read_bytes()

    db = StyleDatabase([main, extra])
    db.styles["new, style"] = PromptStyle("new, style", 'with "quotes", comma\nand newline', "日本語", None)
    db.styles.pop("other")
    db.save_styles()

    assert Path(f"{main}.bak").read_bytes() == old_main
    assert Path(f"{extra}.bak").exists()
    assert main.read_bytes().startswith(b"\xef\xbb\xbfname,prompt,negative_prompt")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    reloaded = StyleDatabase([main, extra])
    visible = {n: (s.prompt, s.negative_prompt) for n, s in reloaded.styles.items() if s.path != "do_not_save"}
    assert visible == {
        "# Section": ("", ""),
        "quality": ("masterpiece", "lowres"),
        "new, style": ('with "quotes", comma\nand newline', "日本語"),
    }

    db.styles["quality"] = db.styles["quality"]._replace(prompt="changed")
    db.save_styles()
    db.reload()
    assert db.styles["quality"].prompt == "changed"


def test_corrupt_file_is_reported_and_never_overwritten(tmp_path, caplog):
    path = tmp_path / "styles.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    with caplog.at_level(logging.ERROR):
        db = StyleDatabase(path)
    assert db.styles == {}
    assert str(path) in caplog.text and "could not be read" in caplog.text

    db.styles["x"] = PromptStyle("x", "y", "", None)
    with pytest.raises(StylesFileError, match="not overwritten"):
        db.save_styles()
    assert path.read_bytes() == b"\xff\xfe\x00garbage\x80\x81"


def test_file_without_a_name_column_is_corrupt(tmp_path, caplog):
    path = tmp_path / "styles.csv"
    path.write_text("foo,bar\n1,2\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        db = StyleDatabase(path)
    assert db.styles == {} and path in db.unreadable_files and "expected name,prompt" in caplog.text


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "styles.csv"
    write_csv(path, [("a", "A", "")])
    before = path.read_bytes()
    db = StyleDatabase(path)
    db.styles["b"] = PromptStyle("b", "B", "", None)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(styles_module.os, "replace", failing_replace)
    with pytest.raises(StylesFileError, match="No space left"):
        db.save_styles()
    assert path.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
