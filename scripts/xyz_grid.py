"""X/Y/Z plot: one image per combination of up to three axes of values, in labelled grids (modules/xyz_grid.py).

Extensions add axis types by appending to this module's `axis_options` (found through
`scripts.scripts_data` by `script_class.__module__ == "xyz_grid.py"`); the list is fresh on every script reload.
"""

import gradio as gr

from modules import scripts
from modules.ui_components import ToolButton
from modules.xyz_grid import (  # noqa: F401  (the names extensions use through this module)
    AxisInfo,
    AxisOption,
    AxisOptionImg2Img,
    AxisOptionTxt2Img,
    apply_checkpoint,
    apply_face_restore,
    apply_field,
    apply_order,
    apply_override,
    apply_prompt,
    apply_size,
    apply_styles,
    apply_uni_pc_order,
    apply_vae,
    axis_options_for,
    boolean_choice,
    confirm_checkpoints,
    confirm_checkpoints_or_none,
    confirm_samplers,
    csv_string_to_list_strip,
    default_axis_options,
    do_nothing,
    draw_xyz_grid,
    find_vae,
    format_nothing,
    format_remove_path,
    format_value,
    format_value_add_label,
    format_value_join_list,
    list_to_csv_string,
    re_range,
    re_range_count,
    re_range_count_float,
    re_range_float,
    run,
    str_permutations,
)

axis_options = default_axis_options()
fill_values_symbol = "\U0001f4d2"  # 📒


class Script(scripts.Script):
    current_axis_options: list = []

    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        self.current_axis_options = axis_options_for(axis_options, is_img2img)
        labels = [x.label for x in self.current_axis_options]

        def axis_row(name: str, default: int):
            with gr.Row():
                axis_type = gr.Dropdown(label=f"{name} type", choices=labels, value=labels[default], type="index",
                                        elem_id=self.elem_id(f"{name.lower()}_type"))
                values = gr.Textbox(label=f"{name} values", value="", lines=1,
                                    elem_id=self.elem_id(f"{name.lower()}_values"))
                values_dropdown = gr.Dropdown(label=f"{name} values", visible=False, multiselect=True,
                                              interactive=True, choices=[], value=[])
                fill = ToolButton(value=fill_values_symbol, elem_id=f"xyz_grid_fill_{name.lower()}_tool_button",
                                  visible=False)
            return axis_type, values, values_dropdown, fill

        with gr.Row():
            with gr.Column(scale=19):
                x_type, x_values, x_values_dropdown, fill_x_button = axis_row("X", 1)
                y_type, y_values, y_values_dropdown, fill_y_button = axis_row("Y", 0)
                z_type, z_values, z_values_dropdown, fill_z_button = axis_row("Z", 0)

        with gr.Row(variant="compact", elem_id="axis_options"):
            with gr.Column():
                draw_legend = gr.Checkbox(label="Draw legend", value=True, elem_id=self.elem_id("draw_legend"))
                no_fixed_seeds = gr.Checkbox(label="Keep -1 for seeds", value=False,
                                             elem_id=self.elem_id("no_fixed_seeds"))
                with gr.Row():
                    vary_seeds_x = gr.Checkbox(label="Vary seeds for X", value=False, min_width=80,
                                               elem_id=self.elem_id("vary_seeds_x"),
                                               info="Use different seeds for images along X axis.")
                    vary_seeds_y = gr.Checkbox(label="Vary seeds for Y", value=False, min_width=80,
                                               elem_id=self.elem_id("vary_seeds_y"),
                                               info="Use different seeds for images along Y axis.")
                    vary_seeds_z = gr.Checkbox(label="Vary seeds for Z", value=False, min_width=80,
                                               elem_id=self.elem_id("vary_seeds_z"),
                                               info="Use different seeds for images along Z axis.")
            with gr.Column():
                include_lone_images = gr.Checkbox(label="Include Sub Images", value=False,
                                                  elem_id=self.elem_id("include_lone_images"))
                include_sub_grids = gr.Checkbox(label="Include Sub Grids", value=False,
                                                elem_id=self.elem_id("include_sub_grids"))
                csv_mode = gr.Checkbox(label="Use text inputs instead of dropdowns", value=False,
                                       elem_id=self.elem_id("csv_mode"))
            with gr.Column():
                margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2,
                                        elem_id=self.elem_id("margin_size"))

        with gr.Row(variant="compact", elem_id="swap_axes"):
            swap_xy_axes_button = gr.Button(value="Swap X/Y axes", elem_id="xy_grid_swap_axes_button")
            swap_yz_axes_button = gr.Button(value="Swap Y/Z axes", elem_id="yz_grid_swap_axes_button")
            swap_xz_axes_button = gr.Button(value="Swap X/Z axes", elem_id="xz_grid_swap_axes_button")

        def swap_axes(type1, values1, dropdown1, type2, values2, dropdown2):
            return (self.current_axis_options[type2].label, values2, dropdown2,
                    self.current_axis_options[type1].label, values1, dropdown1)

        for button, first, second in (
            (swap_xy_axes_button, (x_type, x_values, x_values_dropdown), (y_type, y_values, y_values_dropdown)),
            (swap_yz_axes_button, (y_type, y_values, y_values_dropdown), (z_type, z_values, z_values_dropdown)),
            (swap_xz_axes_button, (x_type, x_values, x_values_dropdown), (z_type, z_values, z_values_dropdown)),
        ):
            button.click(swap_axes, inputs=[*first, *second], outputs=[*first, *second], api_visibility="private")

        def fill(axis_type, csv_mode):
            axis = self.current_axis_options[axis_type or 0]
            if not axis.choices:
                return gr.update(), gr.update()
            if csv_mode:
                return list_to_csv_string(axis.choices()), gr.update()
            return gr.update(), axis.choices()

        def select_axis(axis_type, axis_values, axis_values_dropdown, csv_mode):
            choices = self.current_axis_options[axis_type or 0].choices
            has_choices = choices is not None
            if has_choices:
                choices = choices()
                if csv_mode:
                    if axis_values_dropdown:
                        axis_values = list_to_csv_string([x for x in axis_values_dropdown if x in choices])
                        axis_values_dropdown = []
                elif axis_values:
                    axis_values_dropdown = [x for x in csv_string_to_list_strip(axis_values) if x in choices]
                    axis_values = ""
            return (gr.update(visible=has_choices),
                    gr.update(visible=not has_choices or csv_mode, value=axis_values),
                    gr.update(choices=choices if has_choices else [], visible=has_choices and not csv_mode,
                              value=axis_values_dropdown))

        axis_controls = [(x_type, x_values, x_values_dropdown, fill_x_button),
                         (y_type, y_values, y_values_dropdown, fill_y_button),
                         (z_type, z_values, z_values_dropdown, fill_z_button)]
        for axis_type, values, values_dropdown, fill_button in axis_controls:
            fill_button.click(fn=fill, inputs=[axis_type, csv_mode], outputs=[values, values_dropdown],
                              api_visibility="private")
            axis_type.change(fn=select_axis, inputs=[axis_type, values, values_dropdown, csv_mode],
                             outputs=[fill_button, values, values_dropdown], api_visibility="private")

        def change_choice_mode(csv_mode, *axis_args):
            updates = []
            for i in range(3):
                updates += select_axis(*axis_args[i * 3:i * 3 + 3], csv_mode)
            return updates

        csv_mode.change(
            fn=change_choice_mode,
            inputs=[csv_mode, *[c for axis in axis_controls for c in axis[:3]]],
            outputs=[c for axis in axis_controls for c in (axis[3], axis[1], axis[2])],
            api_visibility="private",
        )

        def dropdown_from_params(axis: str):
            return lambda params: gr.update(value=csv_string_to_list_strip(params.get(f"{axis} Values", "")))

        self.infotext_fields = (
            (x_type, "X Type"),
            (x_values, "X Values"),
            (x_values_dropdown, dropdown_from_params("X")),
            (y_type, "Y Type"),
            (y_values, "Y Values"),
            (y_values_dropdown, dropdown_from_params("Y")),
            (z_type, "Z Type"),
            (z_values, "Z Values"),
            (z_values_dropdown, dropdown_from_params("Z")),
        )

        return [x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values,
                z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x,
                vary_seeds_y, vary_seeds_z, margin_size, csv_mode]

    def run(self, p, x_type, x_values, x_values_dropdown, y_type=0, y_values="", y_values_dropdown=None, z_type=0,
            z_values="", z_values_dropdown=None, draw_legend=True, include_lone_images=False, include_sub_grids=False,
            no_fixed_seeds=False, vary_seeds_x=False, vary_seeds_y=False, vary_seeds_z=False, margin_size=0,
            csv_mode=False):
        options = self.current_axis_options or axis_options_for(axis_options, self.is_img2img)
        return run(
            p, options,
            [(x_type, x_values, x_values_dropdown), (y_type, y_values, y_values_dropdown),
             (z_type, z_values, z_values_dropdown)],
            draw_legend=draw_legend, include_lone_images=include_lone_images, include_sub_grids=include_sub_grids,
            no_fixed_seeds=no_fixed_seeds, vary_seeds=(vary_seeds_x, vary_seeds_y, vary_seeds_z),
            margin_size=int(margin_size or 0), csv_mode=csv_mode, title=self.title(),
        )
