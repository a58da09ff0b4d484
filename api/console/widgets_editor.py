"""The commissioning-file editor: CodeMirror (YAML) that marks each validation
violation at its line.

Validation is the API's: the text is loaded locally with the API's guarded YAML loader
(:mod:`..yaml_lines`; a text that is not YAML is marked where PyYAML stopped) and sent
as it is written (``application/yaml``: its dates and non-string keys have no JSON form)
to ``POST /config/validate``; each violation's ``json_path`` is placed
on a line of the text and drawn as a line decoration (class ``mr-violation``, its path
in ``data-violation``) with a tooltip, and listed under the editor with a button that
scrolls to it.
"""

from __future__ import annotations

from typing import Any

from nicegui import ui

from millrace.api.console.pages import PageContext
from millrace.api.console.widgets_ops import guarded
from millrace.api.console.yaml_lines import Problem, load, placed, refusal_problems

STYLE = """
.mr-violation { background: #fee2e2; }
.mr-warning { background: #fef9c3; }
"""


class CommissioningEditor:
    """An editor of ``text`` with :meth:`validate` (the problems it marked)."""

    def __init__(self, ctx: PageContext, text: str, testid: str = "service-editor") -> None:
        self.ctx = ctx
        ui.add_css(STYLE)
        #: the template picker (:meth:`offer_templates`), above the text
        self.templates = ui.row().classes("items-center gap-2 flex-wrap")
        self.templates.props('data-testid="template-picker"')
        self.templates.set_visibility(False)  # until offered (the new-service editor)
        self.editor = ui.codemirror(text, language="YAML", indent="  ").classes("w-full h-96")
        self.editor.props(f'data-testid="{testid}" aria-label="commissioning file (YAML)"')
        self.summary = ui.label("").props('data-testid="validation-summary" aria-live="polite"')
        self.listing = ui.column().classes("gap-1").props('data-testid="violations"')
        self.problems: list[Problem] = []

    @property
    def text(self) -> str:
        return str(self.editor.value or "")

    @text.setter
    def text(self, value: str) -> None:
        self.editor.value = value

    async def offer_templates(self) -> None:
        """A button per protocol the API has a template of (``GET /config/templates``):
        each puts that commented, valid commissioning file into the editor."""
        if not self.ctx.can("config:read"):
            return
        names = (await self.ctx.api.get("/config/templates"))["data"]
        self.templates.set_visibility(bool(names))
        with self.templates:
            ui.label("Start from a template:").classes("text-sm text-slate-700")
            for name in names:
                ui.button(
                    name,
                    on_click=lambda name=name: guarded(lambda: self.use_template(name), name),
                ).props(f"outline dense no-caps name=template-{name}")

    async def use_template(self, protocol: str) -> None:
        """The API's template of ``protocol`` in the editor, validated."""
        self.text = await self.ctx.api.get(f"/config/templates/{protocol}")
        self.summary.text = f"the {protocol} template"
        await self.validate()

    async def validate(self) -> list[Problem]:
        """Validate the text through the API; mark and list what it found."""
        doc, root, problems = load(self.text)
        if doc is not None:
            answer = await self.ctx.api.request("POST", "/config/validate", text=self.text)
            problems = placed(root, answer.get("violations", []))
        self.show(problems)
        return problems

    def refused(self, message: str, details: list[dict[str, Any]]) -> None:
        """Mark the places the API's refusal (``details``) names; ``message`` summarises."""
        problems = refusal_problems(self.text, details)
        if problems:
            self.show(problems)
        self.summary.text = f"The API refused the file: {message}"

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    def show(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = self.text.count("\n") + 1
        decorations: list[dict[str, Any]] = []
        tips: dict[int, str] = {}
        for p in problems:
            if p.line is None or not 1 <= p.line <= lines:
                continue
            css = "mr-violation" if p.level == "error" else "mr-warning"
            decorations.append(
                {
                    "kind": "line",
                    "line": p.line,
                    "class": css,
                    "attributes": {"data-violation": p.json_path, "title": p.description},
                }
            )
            tips[p.line] = (tips.get(p.line, "") + "\n" if p.line in tips else "") + (
                f"{p.json_path}: {p.description}"
            )
        self.editor.decorations = decorations
        self.editor.line_tooltips = tips
        errors = len(self.errors())
        self.summary.text = (
            "valid: no violations"
            if not problems
            else f"{errors} error(s), {len(problems) - errors} warning(s)"
        )
        self.listing.clear()
        with self.listing:
            for p in problems:
                where = f"line {p.line}" if p.line is not None else "the file"
                with ui.row().classes("items-center gap-2"):
                    ui.label(f"{p.level} at {where}: {p.json_path}: {p.description}").classes(
                        "mr-chip " + ("mr-bad" if p.level == "error" else "")
                    ).props(f'data-testid="violation" data-line="{p.line or ""}"')
                    if p.line is not None:
                        line = p.line
                        ui.button(
                            f"Go to line {line}", on_click=lambda line=line: self.reveal(line)
                        ).props("flat dense no-caps")

    def reveal(self, line: int) -> None:
        self.editor.reveal_line(line)
