"""Extra networks: sub-tabs next to Generation with one card per model file (a1111-spec §7.9): Textual
Inversion, Hypernetworks, Checkpoints, Lora (order: ui_extra_networks_tab_reorder).

A card shows the file's preview picture (same stem .png/.preview.png..., served by /sd_extra_networks/thumb),
its name and description. Clicking it (javascript/extraNetworks.js) inserts its prompt text — `<lora:name:1>`
with extra_networks_default_multiplier, or the Lora's preferred weight and activation text, or an embedding's
name — into the tab's last focused prompt (clicking again removes it); a checkpoint card switches the model.
Every text from a file (names, descriptions, metadata) is HTML-escaped: model files come from the internet.
Search filters in the browser; sort order and 🔄 re-render here.
"""

from __future__ import annotations

import html
import json
import logging
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from modules import hypernetworks, networks, sd_hijack, sd_models, shared
from modules.networks import cards as lora_cards
from modules.ui_components import ToolButton

log = logging.getLogger(__name__)

SORT_FIELDS = ["Path", "Name", "Date Created", "Date Modified"]
SORT_ORDERS = ["Ascending", "Descending"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


@dataclass
class Item:
    """One card."""

    name: str
    filename: str
    prompt: str = ""
    negative_prompt: str = ""
    description: str = ""
    preview: str | None = None
    search_terms: list[str] = field(default_factory=list)
    checkpoint: str | None = None
    metadata: dict[str, Any] | None = None
    allow_negative_prompt: bool = False

    def sort_keys(self) -> dict[str, Any]:
        try:
            st = os.stat(self.filename)
            created, modified = st.st_ctime, st.st_mtime
        except OSError:
            created = modified = 0
        return {"Path": self.filename.lower(), "Name": self.name.lower(), "Date Created": created,
                "Date Modified": modified}


class ExtraNetworksPage:
    """A1111's page interface: `title`, `extra_networks_tabname`, `list_items()`, `refresh()`,
    `allowed_directories_for_previews()`."""

    title = ""
    extra_networks_tabname = ""

    def refresh(self) -> None:
        pass

    def list_items(self) -> list[Item]:
        return []

    def allowed_directories_for_previews(self) -> list[str]:
        return []

    def metadata(self, name: str) -> dict[str, Any] | None:
        item = next((i for i in self.list_items() if i.name == name), None)
        return item.metadata if item is not None else None


def find_preview(filename: str) -> str | None:
    return lora_cards.find_preview(os.path.splitext(filename)[0])


def find_description(filename: str) -> str:
    return lora_cards.find_description(os.path.splitext(filename)[0]) or ""


class PageCheckpoints(ExtraNetworksPage):
    title = "Checkpoints"
    extra_networks_tabname = "checkpoints"

    def refresh(self) -> None:
        sd_models.list_models()

    def list_items(self) -> list[Item]:
        items = []
        for info in sd_models.checkpoints_list.values():
            items.append(Item(name=info.name_for_extra, filename=info.filename, checkpoint=info.title,
                              description=find_description(info.filename), preview=find_preview(info.filename),
                              search_terms=[info.name, info.title], metadata=info.metadata or None))
        return items

    def allowed_directories_for_previews(self) -> list[str]:
        return sd_models.ckpt_dirs()


class PageLora(ExtraNetworksPage):
    title = "Lora"
    extra_networks_tabname = "lora"

    def refresh(self) -> None:
        networks.list_available_networks()

    def list_items(self) -> list[Item]:
        items = []
        for card in lora_cards.lora_cards(sd_models.model_data.sd_model):
            items.append(Item(name=card["name"], filename=card["filename"], prompt=card["prompt"],
                              negative_prompt=card["negative_prompt"] or "", description=card["description"] or "",
                              preview=card["preview"], search_terms=card["search_terms"],
                              metadata=card["metadata"] or None))
        return items

    def allowed_directories_for_previews(self) -> list[str]:
        return [d for d in networks.library.network_dirs() if d]


class PageTextualInversion(ExtraNetworksPage):
    title = "Textual Inversion"
    extra_networks_tabname = "textual_inversion"

    def list_items(self) -> list[Item]:
        items = []
        for folder in sd_hijack.model_hijack.embedding_db.embedding_dirs.values():
            if not os.path.isdir(folder.path):
                continue
            for filename in folder.files():
                name = os.path.splitext(os.path.basename(filename))[0]
                items.append(Item(name=name, filename=filename, prompt=name, description=find_description(filename),
                                  preview=find_preview(filename), search_terms=[filename],
                                  allow_negative_prompt=True))
        return items

    def allowed_directories_for_previews(self) -> list[str]:
        return list(sd_hijack.model_hijack.embedding_db.embedding_dirs)


class PageHypernetworks(ExtraNetworksPage):
    title = "Hypernetworks"
    extra_networks_tabname = "hypernetworks"

    def refresh(self) -> None:
        hypernetworks.refresh_hypernetworks()

    def list_items(self) -> list[Item]:
        multiplier = shared.opts.extra_networks_default_multiplier
        return [Item(name=name, filename=path, prompt=f"<hypernet:{name}:{multiplier}>",
                     description=find_description(path), preview=find_preview(path), search_terms=[path])
                for name, path in shared.hypernetworks.items()]

    def allowed_directories_for_previews(self) -> list[str]:
        return [shared.cmd_opts.hypernetwork_dir]


extra_pages: list[ExtraNetworksPage] = []


def register_page(page: ExtraNetworksPage) -> None:
    """A1111's name: extensions add their own pages."""
    extra_pages.append(page)


def initialize() -> None:
    extra_pages.clear()


def register_default_pages() -> None:
    for page in (PageTextualInversion(), PageHypernetworks(), PageCheckpoints(), PageLora()):
        register_page(page)


def ordered_pages() -> list[ExtraNetworksPage]:
    """Pages in ui_extra_networks_tab_reorder order (titles separated by commas), the rest as registered."""
    wanted = [x.strip().lower() for x in (shared.opts.ui_extra_networks_tab_reorder or "").split(",") if x.strip()]
    rank = {title: i for i, title in enumerate(wanted)}
    return sorted(extra_pages, key=lambda p: rank.get(p.title.lower(), len(rank)))


def page_by_tabname(name: str) -> ExtraNetworksPage | None:
    return next((p for p in extra_pages if p.extra_networks_tabname == name), None)


def thumbnail_url(filename: str) -> str:
    query = urllib.parse.urlencode({"filename": filename, "mtime": int(os.path.getmtime(filename))})
    return f"./sd_extra_networks/thumb?{query}"


def allowed_preview_file(filename: str) -> str | None:
    """The real path of a preview picture the thumb route may serve: an image file inside one of the pages'
    model folders after resolving links; None for anything else."""
    suffixes = (*IMAGE_SUFFIXES, f".{shared.opts.samples_format}")
    if not filename or os.path.splitext(filename)[1].lower() not in suffixes:
        return None
    real = os.path.realpath(filename)
    for page in extra_pages:
        for folder in page.allowed_directories_for_previews():
            if not folder:
                continue
            root = os.path.realpath(folder)
            if real.startswith(root.rstrip(os.sep) + os.sep) and os.path.isfile(real):
                return real
    return None


def metadata_html(metadata: dict[str, Any] | None) -> str:
    """A metadata table, every key and value escaped (values that are JSON text are shown pretty-printed)."""
    if not metadata:
        return "<div class='extra-network-metadata'>No metadata.</div>"
    rows = []
    for key, value in metadata.items():
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
                if isinstance(parsed, (dict, list)):
                    value = json.dumps(parsed, indent=2, ensure_ascii=False)
            except ValueError:
                pass
        else:
            value = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td><pre>{html.escape(str(value))}</pre></td></tr>")
    return f"<table class='extra-network-metadata'>{''.join(rows)}</table>"


def card_html(tabname: str, page: ExtraNetworksPage, item: Item) -> str:
    attr = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    keys = item.sort_keys()
    data = {
        "name": item.name, "prompt": item.prompt, "negative-prompt": item.negative_prompt,
        "allow-negative": "1" if item.allow_negative_prompt else "", "checkpoint": item.checkpoint or "",
        "search": " ".join([item.name, *item.search_terms]).lower(), "page": page.extra_networks_tabname,
        "sort-path": keys["Path"], "sort-name": keys["Name"], "sort-date_created": keys["Date Created"],
        "sort-date_modified": keys["Date Modified"],
    }
    attributes = " ".join(f"data-{k}='{attr(v)}'" for k, v in data.items())
    preview = ""
    if item.preview:
        preview = f"<img class='preview' src='{attr(thumbnail_url(item.preview))}' loading='lazy' alt=''>"
    description = ""
    if item.description and shared.opts.extra_networks_card_show_desc:
        text = item.description if shared.opts.extra_networks_card_description_is_html else html.escape(
            item.description)
        description = f"<span class='description'>{text}</span>"
    metadata_button = ""
    if item.metadata:
        metadata_button = "<div class='metadata-button card-button' title='Show internal metadata'>\u24d8</div>"
    style = []
    if shared.opts.extra_networks_card_width:
        style.append(f"width: {int(shared.opts.extra_networks_card_width)}px")
    if shared.opts.extra_networks_card_height:
        style.append(f"height: {int(shared.opts.extra_networks_card_height)}px")
    return (f"<div class='card extra-network-card' {attributes} style='{attr('; '.join(style))}'>{preview}"
            f"<div class='button-row'>{metadata_button}</div>"
            f"<div class='actions'><div class='name'>{html.escape(item.name)}</div>{description}</div></div>")


def sorted_items(items: list[Item], sort_field: str, order: str) -> list[Item]:
    sort_field = sort_field if sort_field in SORT_FIELDS else "Path"
    return sorted(items, key=lambda i: i.sort_keys()[sort_field], reverse=order == "Descending")


def page_html(tabname: str, page: ExtraNetworksPage, sort_field: str | None = None, order: str | None = None) -> str:
    try:
        items = page.list_items()
    except Exception as e:  # one broken file must not take the whole tab down
        log.exception("Listing %s failed", page.title)
        return f"<div class='error'>{html.escape(f'Could not list {page.title}: {e}')}</div>"
    items = sorted_items(items, sort_field or shared.opts.extra_networks_card_order_field,
                         order or shared.opts.extra_networks_card_order)
    if not items:
        folders = ", ".join(page.allowed_directories_for_previews())
        return (f"<div class='nocards'><h1>Nothing here.</h1><p>Put {html.escape(page.title)} files into "
                f"{html.escape(folders)} and press 🔄.</p></div>")
    cards = "".join(card_html(tabname, page, item) for item in items)
    return f"<div class='extra-network-cards' data-tabname='{tabname}'>{cards}</div>"


def create_ui(tabname: str) -> list:
    """The page tabs (inside the caller's gr.Tabs); returns the tabs."""
    tabs = []
    for page in ordered_pages():
        page_id = page.extra_networks_tabname
        with gr.Tab(page.title, id=f"{tabname}_{page_id}", elem_id=f"{tabname}_{page_id}",
                    elem_classes=["extra-page"]) as tab:
            with gr.Row(elem_id=f"{tabname}_{page_id}_controls", elem_classes=["extra-network-controls"]):
                gr.Textbox(show_label=False, placeholder="Search...", elem_id=f"{tabname}_{page_id}_extra_search",
                           elem_classes=["extra-network-search"], scale=4, container=False)
                sort_field = gr.Dropdown(SORT_FIELDS, value=shared.opts.extra_networks_card_order_field,
                                         show_label=False, elem_id=f"{tabname}_{page_id}_extra_sort",
                                         container=False, scale=1)
                sort_order = gr.Dropdown(SORT_ORDERS, value=shared.opts.extra_networks_card_order, show_label=False,
                                         elem_id=f"{tabname}_{page_id}_extra_sort_dir", container=False, scale=1)
                refresh = ToolButton("\U0001f504", elem_id=f"{tabname}_{page_id}_extra_refresh",
                                     tooltip="Refresh page")
            cards = gr.HTML(lambda t=tabname, p=page: page_html(t, p), elem_id=f"{tabname}_{page_id}_cards_html",
                            elem_classes=["extra-network-pane"])

            def rerender(sort, order, t=tabname, p=page):
                return page_html(t, p, sort, order)

            def refresh_page(sort, order, t=tabname, p=page):
                p.refresh()
                return page_html(t, p, sort, order)

            private = {"api_visibility": "private", "show_progress": "hidden"}
            sort_field.change(fn=rerender, inputs=[sort_field, sort_order], outputs=[cards], **private)
            sort_order.change(fn=rerender, inputs=[sort_field, sort_order], outputs=[cards], **private)
            refresh.click(fn=refresh_page, inputs=[sort_field, sort_order], outputs=[cards], **private)
        tabs.append(tab)
    return tabs


def add_routes(app, prefix: str = "") -> None:
    """/sd_extra_networks/thumb (preview pictures inside the model folders only) and /sd_extra_networks/metadata."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse, JSONResponse

    def thumb(filename: str = "", mtime: str | None = None):
        real = allowed_preview_file(filename)
        if real is None:
            raise HTTPException(status_code=403, detail="File not allowed")
        return FileResponse(real, headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    def metadata(page: str = "", item: str = ""):
        found = page_by_tabname(page)
        if found is None:
            raise HTTPException(status_code=404, detail="Page not found")
        return JSONResponse({"html": metadata_html(found.metadata(item))})

    prefix = prefix.rstrip("/")
    app.add_api_route(f"{prefix}/sd_extra_networks/thumb", thumb, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{prefix}/sd_extra_networks/metadata", metadata, methods=["GET"], include_in_schema=False)

