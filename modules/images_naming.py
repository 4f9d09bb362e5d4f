"""File names for saved images: A1111's ``[tag]`` patterns, sanitising, sequence numbers (reference spec §3)."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from PIL import Image

from modules import sd_samplers
from modules.options import current_opts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilenameRules:
    """How file name parts are cleaned: ``--filenames-max-length`` and ``--unix-filenames-sanitization``."""

    max_length: int = 128
    unix: bool = False

    @property
    def invalid_chars(self) -> str:
        # NUL can never be in a file name, whatever the flags say.
        return "/\0" if self.unix else '#<>:"/\\|?*\n\r\t\0'


# The app replaces this at start-up from the command line.
filename_rules = FilenameRules()

invalid_filename_prefix = " "
invalid_filename_postfix = " ."
re_nonletters = re.compile(r"[\s" + string.punctuation + "]+")
re_pattern = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)")
re_pattern_arg = re.compile(r"(.*)<([^>]*)>$")

# A tag function returns this to drop itself and the literal text before it (e.g. "-[batch_number]").
NOTHING_AND_SKIP_PREVIOUS_TEXT = object()


def sanitize_filename_part(
    text: str | None, replace_spaces: bool = True, *, rules: FilenameRules | None = None
) -> str | None:
    """Make text usable inside a file name: bad characters become ``_``, length capped, no trailing dots."""
    if text is None:
        return None
    rules = rules or filename_rules
    if replace_spaces:
        text = text.replace(" ", "_")
    text = text.translate({ord(c): "_" for c in rules.invalid_chars})
    text = text.lstrip(invalid_filename_prefix)[: rules.max_length]
    return text.rstrip(invalid_filename_postfix)


def get_scheduler_str(sampler_name: str, scheduler_name: str) -> str:
    """The schedule type as a file name shows it; "Automatic" becomes the sampler's default."""
    if scheduler_name == "Automatic":
        config = sd_samplers.all_samplers_map.get(sampler_name)
        scheduler_name = (config.options.get("scheduler") if config else None) or "Automatic"
    return scheduler_name.capitalize()


def get_sampler_scheduler_str(sampler_name: str, scheduler_name: str) -> str:
    return f"{sampler_name} {get_scheduler_str(sampler_name, scheduler_name)}"


def get_sampler_scheduler(p: Any, sampler: bool, *, rules: FilenameRules | None = None) -> Any:
    """``"{Sampler} {Scheduler}"`` (or just the scheduler) for file names."""
    if hasattr(p, "scheduler") and hasattr(p, "sampler_name"):
        if sampler:
            text = get_sampler_scheduler_str(p.sampler_name, p.scheduler)
        else:
            text = get_scheduler_str(p.sampler_name, p.scheduler)
        return sanitize_filename_part(text, replace_spaces=False, rules=rules)
    return NOTHING_AND_SKIP_PREVIOUS_TEXT


def _vae_file_stem(vae_name: str | None) -> str:
    if vae_name is None:
        return "NoneType"
    parts = os.path.basename(vae_name).split(".")
    # ".hidden.safetensors" -> "hidden"
    return parts[1] if len(parts) > 1 and parts[0] == "" else parts[0]


class FilenameGenerator:
    """Expands ``[tag]`` patterns of the file/folder name settings (reference spec §3, saving-to-dirs).

    `styles` (a StyleDatabase) is needed for ``[prompt_no_styles]``; `now` fixes the time of ``[date]`` and
    ``[datetime]``. Extensions add tags by adding to `FilenameGenerator.replacements`.
    """

    replacements: dict[str, Callable[..., Any]] = {
        "basename": lambda self: self.basename or "img",
        "seed": lambda self: self.seed if self.seed is not None else "",
        "seed_first": lambda self: self.seed if self.p.batch_size == 1 else self.p.all_seeds[0],
        "seed_last": lambda self: NOTHING_AND_SKIP_PREVIOUS_TEXT if self.p.batch_size == 1 else self.p.all_seeds[-1],
        "steps": lambda self: self.p and self.p.steps,
        "cfg": lambda self: self.p and self.p.cfg_scale,
        "width": lambda self: self.image.width,
        "height": lambda self: self.image.height,
        "styles": lambda self: (
            self.p
            and self.sanitize(
                ", ".join(style for style in self.p.styles if style != "None") or "None", replace_spaces=False
            )
        ),
        "sampler": lambda self: self.p and self.sanitize(self.p.sampler_name, replace_spaces=False),
        "sampler_scheduler": lambda self: self.p and get_sampler_scheduler(self.p, True, rules=self.rules),
        "scheduler": lambda self: self.p and get_sampler_scheduler(self.p, False, rules=self.rules),
        "model_hash": lambda self: getattr(self.p, "sd_model_hash", None),
        "model_name": lambda self: self.sanitize(getattr(self.p, "sd_model_name", None), replace_spaces=False),
        "date": lambda self: self.now.strftime("%Y-%m-%d"),
        "datetime": lambda self, *args: self.datetime(*args),
        "job_timestamp": lambda self: getattr(self.p, "job_timestamp", None) or self.now.strftime("%Y%m%d%H%M%S"),
        "prompt_hash": lambda self, *args: self.string_hash(self.prompt, *args),
        "negative_prompt_hash": lambda self, *args: self.string_hash(self.p.negative_prompt, *args),
        "full_prompt_hash": lambda self, *args: self.string_hash(f"{self.p.prompt} {self.p.negative_prompt}", *args),
        "prompt": lambda self: self.sanitize(self.prompt),
        "prompt_no_styles": lambda self: self.prompt_no_style(),
        "prompt_spaces": lambda self: self.sanitize(self.prompt, replace_spaces=False),
        "prompt_words": lambda self: self.prompt_words(),
        "batch_number": lambda self: (
            NOTHING_AND_SKIP_PREVIOUS_TEXT if self.p.batch_size == 1 or self.zip else self.p.batch_index + 1
        ),
        "batch_size": lambda self: self.p.batch_size,
        "generation_number": lambda self: (
            NOTHING_AND_SKIP_PREVIOUS_TEXT
            if (self.p.n_iter == 1 and self.p.batch_size == 1) or self.zip
            else self.p.iteration * self.p.batch_size + self.p.batch_index + 1
        ),
        "hasprompt": lambda self, *args: self.hasprompt(*args),
        "clip_skip": lambda self: self.opts.CLIP_stop_at_last_layers,
        "denoising": lambda self: (
            self.p.denoising_strength
            if self.p and getattr(self.p, "denoising_strength", None)
            else NOTHING_AND_SKIP_PREVIOUS_TEXT
        ),
        "user": lambda self: self.p.user,
        "vae_filename": lambda self: _vae_file_stem(getattr(self.p, "sd_vae_name", None)),
        "none": lambda self: "",
        "image_hash": lambda self, *args: self.image_hash(*args),
    }
    default_time_format = "%Y%m%d%H%M%S"

    def __init__(
        self,
        p: Any,
        seed: int | None,
        prompt: str | None,
        image: Image.Image | None,
        zip: bool = False,
        basename: str = "",
        *,
        opts: Any = None,
        styles: Any = None,
        now: datetime.datetime | None = None,
        rules: FilenameRules | None = None,
    ):
        opts = opts if opts is not None else current_opts()
        self.p = p
        self.seed = seed
        self.prompt = prompt
        self.image = image
        self.zip = zip
        self.basename = basename
        self.opts = opts
        self.styles = styles
        self.now = now or datetime.datetime.now()
        self.rules = rules or filename_rules

    def sanitize(self, text: str | None, replace_spaces: bool = True) -> str | None:
        return sanitize_filename_part(text, replace_spaces, rules=self.rules)

    def hasprompt(self, *args: str) -> str | None:
        if self.p is None or self.prompt is None:
            return None
        lower = self.prompt.lower()
        res = ""
        for arg in args:
            if arg != "":
                division = arg.split("|")
                expected = division[0].lower()
                default = division[1] if len(division) > 1 else ""
                if lower.find(expected) >= 0:
                    res += expected
                else:
                    res += default
        return self.sanitize(res)

    def prompt_no_style(self) -> str | None:
        if self.p is None or self.prompt is None:
            return None
        prompt = self.prompt
        style_texts = self.styles.get_style_prompts(self.p.styles) if self.styles is not None else []
        for style in style_texts:
            if style:
                for part in style.split("{prompt}"):
                    prompt = prompt.replace(part, "").replace(", ,", ",").strip().strip(",")
                prompt = prompt.replace(style, "").strip().strip(",").strip()
        return self.sanitize(prompt, replace_spaces=False)

    def prompt_words(self) -> str | None:
        words = [x for x in re_nonletters.split(self.prompt or "") if x] or ["empty"]
        return self.sanitize(" ".join(words[: self.opts.directories_max_prompt_words]), replace_spaces=False)

    def datetime(self, *args: str) -> str | None:
        time_format = args[0] if args and args[0] != "" else self.default_time_format
        time_zone = None
        if len(args) > 1:
            try:
                time_zone = ZoneInfo(args[1])
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("Unknown time zone %r in file name pattern; using local time", args[1])
        moment = self.now.astimezone(time_zone)
        try:
            formatted = moment.strftime(time_format)
        except (ValueError, TypeError):
            formatted = moment.strftime(self.default_time_format)
        return self.sanitize(formatted, replace_spaces=False)

    def image_hash(self, *args: str) -> str:
        length = int(args[0]) if args and args[0] != "" else None
        return hashlib.sha256(self.image.tobytes()).hexdigest()[:length]

    def string_hash(self, text: str, *args: str) -> str:
        length = int(args[0]) if args and args[0] != "" else 8
        return hashlib.sha256(text.encode()).hexdigest()[:length]

    def apply(self, x: str) -> str:
        """Expand every ``[tag]`` / ``[tag<arg>...]``; unknown tags and failed ones stay as written."""
        res = ""
        for m in re_pattern.finditer(x):
            text, pattern = m.groups()
            if pattern is None:
                res += text
                continue

            pattern_args = []
            while (arg_match := re_pattern_arg.match(pattern)) is not None:
                pattern, arg = arg_match.groups()
                pattern_args.insert(0, arg)

            fun = self.replacements.get(pattern.lower())
            if fun is not None:
                try:
                    replacement = fun(self, *pattern_args)
                except Exception as e:
                    log.warning("Could not fill in [%s] in a file name: %s", pattern, e)
                    replacement = None

                if replacement is NOTHING_AND_SKIP_PREVIOUS_TEXT:
                    continue
                if replacement is not None:
                    res += text + str(replacement)
                    continue

            res += f"{text}[{pattern}]"
        return res


def get_next_sequence_number(path: str, basename: str) -> int:
    """The next image number in a folder: one more than the largest leading number of its files (0 if none)."""
    result = -1
    prefix = f"{basename}-" if basename != "" else ""
    for name in os.listdir(path):
        if name.startswith(prefix):
            first = os.path.splitext(name[len(prefix) :])[0].split("-")[0]
            with contextlib.suppress(ValueError):
                result = max(int(first), result)
    return result + 1
