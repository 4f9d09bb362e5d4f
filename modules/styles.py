"""Prompt styles: named prompt/negative-prompt snippets kept in A1111's ``styles.csv`` files.

Format (A1111): UTF-8 with BOM, columns ``name,prompt,negative_prompt`` (old files: ``name,text``). Several files
may be given, with wildcards; the first one is where new styles are saved. A style text containing ``{prompt}``
wraps the user prompt; any other text is appended with ``", "``.

Rows whose name starts with ``#`` are dividers: listed, never applied or matched, and written back on save
(A1111 drops them on save; we keep the user's file intact).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from modules.errors import UserError
from modules.fileio import atomic_file

log = logging.getLogger(__name__)

# Path marker of the per-file divider entries added when styles come from several files; never saved.
DIVIDER_PATH = "do_not_save"

CSV_FIELDS = ("name", "prompt", "negative_prompt")


class PromptStyle(NamedTuple):
    name: str
    prompt: str
    negative_prompt: str
    path: str | None = None

    @property
    def is_divider(self) -> bool:
        return self.name.startswith("#") or self.path == DIVIDER_PATH


class StylesFileError(UserError):
    """A styles file cannot be read or written."""


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """Apply one style text to a prompt: fill ``{prompt}``, or append with ``", "`` (empty parts dropped)."""
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles_to_prompt(prompt: str, styles: Iterable[str]) -> str:
    """Apply style texts in order."""
    for style in styles:
        prompt = merge_prompts(style, prompt)
    return prompt


def extract_style_text_from_prompt(style_text: str, prompt: str) -> tuple[bool, str]:
    """Undo `merge_prompts` for one style text: ``(matched, prompt without the style)``."""
    stripped_prompt = prompt.strip()
    stripped_style = style_text.strip()

    if "{prompt}" in stripped_style:
        left, _, right = stripped_style.partition("{prompt}")
        if stripped_prompt.startswith(left) and stripped_prompt.endswith(right):
            return True, stripped_prompt[len(left) : len(stripped_prompt) - len(right)]
    elif stripped_prompt.endswith(stripped_style):
        rest = stripped_prompt[: len(stripped_prompt) - len(stripped_style)]
        if rest.endswith(", "):
            rest = rest[:-2]
        return True, rest

    return False, prompt


def extract_original_prompts(style: PromptStyle, prompt: str, negative_prompt: str) -> tuple[bool, str, str]:
    """Remove one style from both prompts if both texts match; a style with two empty texts never matches."""
    if not style.prompt and not style.negative_prompt:
        return False, prompt, negative_prompt

    matched, new_prompt = extract_style_text_from_prompt(style.prompt, prompt)
    if not matched:
        return False, prompt, negative_prompt

    matched, new_negative = extract_style_text_from_prompt(style.negative_prompt, negative_prompt)
    if not matched:
        return False, prompt, negative_prompt

    return True, new_prompt, new_negative


def _expand(pattern: str | Path) -> list[Path]:
    folder, file = os.path.split(str(pattern))
    if "*" in file or "?" in file:
        return sorted(Path(folder or ".").glob(file))
    return [Path(pattern)]


class StyleDatabase:
    """All styles from one or more CSV files, in file order (A1111's ``shared.prompt_styles``)."""

    def __init__(self, paths: str | Path | Sequence[str | Path]):
        self.paths: list[str | Path] = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not self.paths:
            raise ValueError("StyleDatabase needs at least one styles file path")
        self.no_style = PromptStyle("None", "", "", None)
        self.styles: dict[str, PromptStyle] = {}
        self.all_styles_files: list[Path] = []
        self.prompt_fields = list(CSV_FIELDS)
        # Files that exist but could not be read: never overwritten, so a save cannot destroy them.
        self.unreadable_files: set[Path] = set()

        first_folder, first_file = os.path.split(str(self.paths[0]))
        if "*" in first_file or "?" in first_file:
            matches = _expand(self.paths[0])
            self.default_path = matches[0] if matches else Path(first_folder or ".", "styles.csv")
            self.paths.insert(0, self.default_path)
        else:
            self.default_path = Path(self.paths[0])

        self.reload()

    def reload(self) -> None:
        """Re-read every styles file; a missing file is an empty one, an unreadable one is reported and skipped."""
        self.styles.clear()
        self.unreadable_files.clear()

        files: list[Path] = []
        for pattern in self.paths:
            for file in _expand(pattern):
                if file not in files:
                    files.append(file)
        self.all_styles_files = files

        for file in files:
            if len(files) > 1:
                divider = f" {file.stem.upper()} ".center(40, "-")
                self.styles[divider] = PromptStyle(divider, "", "", DIVIDER_PATH)
            if file.is_file():
                self.load_from_csv(file)

    def load_from_csv(self, path: str | Path) -> None:
        """Add the styles of one CSV file (later rows with the same name replace earlier ones)."""
        path = Path(path)
        try:
            with open(path, encoding="utf-8-sig", newline="") as file:
                reader = csv.DictReader(file, skipinitialspace=True)
                fields = reader.fieldnames or []
                if "name" not in fields or not ({"prompt", "text"} & set(fields)):
                    raise ValueError(f"header is {fields!r}, expected name,prompt,negative_prompt")
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error, ValueError) as e:
            self.unreadable_files.add(path)
            log.error(
                "Styles file %s could not be read (%s); its styles are not available and it will not be "
                "overwritten. Fix or remove the file, then reload styles.",
                path,
                e,
            )
            return

        for row in rows:
            name = row.get("name")
            if not name:
                continue
            prompt = row.get("prompt") if "prompt" in row else row.get("text")
            self.styles[name] = PromptStyle(name, prompt or "", row.get("negative_prompt") or "", str(path))

    def _applicable(self, name: str) -> PromptStyle:
        style = self.styles.get(name, self.no_style)
        return self.no_style if style.is_divider else style

    def get_style_prompts(self, styles: Iterable[str]) -> list[str]:
        return [self._applicable(name).prompt for name in styles]

    def get_negative_style_prompts(self, styles: Iterable[str]) -> list[str]:
        return [self._applicable(name).negative_prompt for name in styles]

    def apply_styles_to_prompt(self, prompt: str, styles: Iterable[str]) -> str:
        """Apply the named styles' prompts in order; unknown names count as an empty style."""
        return apply_styles_to_prompt(prompt, self.get_style_prompts(styles))

    def apply_negative_styles_to_prompt(self, prompt: str, styles: Iterable[str]) -> str:
        return apply_styles_to_prompt(prompt, self.get_negative_style_prompts(styles))

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """Find styles whose texts end (or wrap) both prompts, remove them repeatedly.

        Returns ``(names, prompt, negative_prompt)``, names in the order the styles would be applied.
        """
        extracted: list[str] = []
        candidates = [style for style in self.styles.values() if not style.is_divider]

        while True:
            for style in candidates:
                matched, new_prompt, new_negative = extract_original_prompts(style, prompt, negative_prompt)
                if matched:
                    prompt, negative_prompt = new_prompt, new_negative
                    candidates.remove(style)
                    extracted.append(style.name)
                    break
            else:
                break

        return list(reversed(extracted)), prompt, negative_prompt

    def get_style_paths(self) -> set[str]:
        """Files that hold styles; styles without a file are assigned to the default file."""
        for style in list(self.styles.values()):
            if not style.path:
                self.styles[style.name] = style._replace(path=str(self.default_path))

        paths = {str(self.default_path)}
        paths.update(style.path for style in self.styles.values() if style.path)
        paths.discard(DIVIDER_PATH)
        return paths

    def save_styles(self, path: str | None = None) -> None:
        """Write every styles file atomically, keeping the previous version as ``<file>.bak``.

        `path` is ignored (A1111 kept it for backwards compatibility).
        """
        # Files loaded earlier are rewritten even when their last style was deleted.
        loaded = {str(f) for f in self.all_styles_files if f.is_file() and f not in self.unreadable_files}
        for style_path in sorted(self.get_style_paths() | loaded):
            target = Path(style_path)
            if target in self.unreadable_files:
                raise StylesFileError(
                    f"Styles file {target} could not be read when styles were loaded, so it was not overwritten. "
                    "Fix or remove the file and reload styles before saving."
                )
            rows = [style for style in self.styles.values() if style.path == style_path]
            _write_csv_atomically(target, rows)


def _write_csv_atomically(target: Path, styles: Sequence[PromptStyle]) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.copy(target, f"{target}.bak")
        with atomic_file(str(target), "w", encoding="utf-8-sig", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for style in styles:
                writer.writerow({"name": style.name, "prompt": style.prompt, "negative_prompt": style.negative_prompt})
    except OSError as e:
        raise StylesFileError(
            f"Could not save styles to {target}: {e.strerror or e}. Check that the folder is writable and the "
            "disk is not full; the previous file is unchanged."
        ) from e
