"""Postprocessing scripts in txt2img / img2img: A1111's `modules.scripts_auto_postprocessing`.

Each Extras script named in the setting postprocessing_enable_in_main_ui becomes an always-on `Script` of the
generation tabs: its controls appear there and its `process()` runs on every generated image in the
`postprocess_image` hook; its `pp.info` entries go into the image's infotext (extra generation parameters).
"""

from __future__ import annotations

from modules import scripts, scripts_postprocessing, shared


class ScriptPostprocessingForMainUI(scripts.Script):
    def __init__(self, script_postproc: scripts_postprocessing.ScriptPostprocessing) -> None:
        self.script = script_postproc
        self.postprocessing_controls: dict | None = None

    def title(self) -> str:
        return self.script.name or type(self.script).__name__

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool):
        self.postprocessing_controls = self.script.ui()
        return list(self.postprocessing_controls.values())

    def postprocess_image(self, p, script_pp: scripts.PostprocessImageArgs, *args) -> None:
        kwargs = dict(zip(self.postprocessing_controls or {}, args, strict=False))
        pp = scripts_postprocessing.PostprocessedImage(script_pp.image)
        self.script.process(pp, **kwargs)
        p.extra_generation_params.update(pp.info)
        script_pp.image = pp.image


def create_auto_preprocessing_script_data() -> list[scripts.ScriptClassData]:
    """ScriptClassData for each Extras script enabled in the main UI (A1111's name, typo included)."""
    result = []
    for name in shared.opts.postprocessing_enable_in_main_ui or []:
        data = next((d for d in scripts.postprocessing_scripts_data if d.script_class.name == name), None)
        if data is None:
            continue

        def constructor(cls=data.script_class) -> ScriptPostprocessingForMainUI:
            return ScriptPostprocessingForMainUI(cls())

        result.append(scripts.ScriptClassData(constructor, data.path, data.basedir, data.module))
    return result
