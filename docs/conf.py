"""Sphinx configuration of seqkit's documentation site (``make docs`` builds it into site/).

The source folder is the repository root, read through ``include_patterns``: the pages in docs/,
the recipes' READMEs and BENCHMARKS.md, so that the links between them are checked as written in
the repository. The API reference comes from the docstrings (autodoc, Google style through
napoleon) and the command-line reference from the Typer app itself, generated at every build
(docs/_generated/cli.md), so neither can drift from the code. ``make docs`` builds with ``-W
--keep-going -n``: any warning, broken link or unresolved reference fails the build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's seqkit when it is not installed
os.environ.setdefault("TRITON_INTERPRET", "1")  # import the losses on machines without a GPU

from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive  # noqa: E402

import seqkit  # noqa: E402

project = "seqkit"
author = "the seqkit developers"
copyright = "the seqkit developers"  # noqa: A001
release = seqkit.__version__

root_doc = "docs/index"
include_patterns = ["docs/**", "recipes/*/README.md", "BENCHMARKS.md"]
exclude_patterns = [".venv", "site", "build", ".git", "**/__pycache__", "docs/_static"]
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}

# Markdown: heading anchors for links such as real-speech.md#some-section, and the ```{eval-rst}
# blocks the API page uses.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# Strict: every reference must resolve. Types from outside seqkit have no pages here (there is
# no network to fetch their inventories), so only they are let through.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|numpy|np|os|pathlib|collections\.abc|typing|enum|types)(\..*)?"),
    (r"py:.*", r"(Tensor|ndarray|Path|PathLike|Callable|Iterator|Iterable|Sequence|Mapping)"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # dataclass fields as fields of the class, not duplicate attributes
napoleon_use_rtype = False

smartquotes = False  # "--resume" in help text stays two hyphens, not an en dash

html_theme = "furo"
html_title = f"seqkit {release}"
html_extra_path = ["_root"]  # site/index.html: a redirect to the front page
html_show_sourcelink = False


class _DocFacts(Directive):
    """The losses' ``.. devices::`` and ``.. properties::`` lines (torchaudio's docstring
    layout, see STYLE.md) as a short paragraph."""

    has_content = False
    required_arguments = 1
    final_argument_whitespace = True

    def run(self) -> list[nodes.Node]:
        label = {"devices": "Devices", "properties": "Properties"}[self.name]
        paragraph = nodes.paragraph()
        paragraph += nodes.strong(text=f"{label}: ")
        paragraph += nodes.Text(", ".join(self.arguments[0].split()))
        return [paragraph]


def _public_names() -> dict[str, str]:
    """Where each public object is defined -> the name it is documented under (seqkit.X)."""
    names = {}
    for name in seqkit.__all__:
        value = getattr(seqkit, name)
        module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        if module and qualname and module != "seqkit":
            names[f"{module}.{qualname}"] = f"seqkit.{name}"
    return names


_PUBLIC = _public_names()


def _public_alias(app, env, node, contnode):  # noqa: ANN001, ANN202 (Sphinx's event signature)
    """Resolve a reference to a public object by its defining module (as type hints name it,
    e.g. seqkit.decoding.results.Hypothesis) or by its bare name in a docstring's Raises
    (LossInputError) to its entry, seqkit.Hypothesis or seqkit.LossInputError."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    if target in seqkit.__all__:
        return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder,
                                                 node["reftype"], f"seqkit.{target}", node,
                                                 contnode)
    for defined, public in _PUBLIC.items():
        if target == defined or target.startswith(defined + "."):
            domain = env.get_domain("py")
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                       public + target[len(defined):], node, contnode)
    return None


def _write_cli_reference() -> None:
    """docs/_generated/cli.md from the Typer app, with Typer's own Markdown generator."""
    import typer
    import typer.main
    from typer.cli import get_docs_for_click

    from seqkit.cli.main import app

    command = typer.main.get_command(app)
    body = get_docs_for_click(obj=command, ctx=typer.Context(command), name="seqkit",
                              title="Command-line reference")
    intro = (
        "Every command and option of `seqkit`, generated from the command-line app itself at "
        "each build of this site (the same text as `seqkit COMMAND --help`), so it cannot "
        "drift from the program. The [user guide](../commands.md) explains what the commands "
        "do.\n\n"
    )
    title, _, rest = body.partition("\n\n")
    text = f"{title}\n\n{intro}{rest.strip()}\n"
    target = ROOT / "docs" / "_generated" / "cli.md"
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return  # unchanged: Sphinx need not read it again
    target.parent.mkdir(exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(target)


_write_cli_reference()


def setup(app):  # noqa: ANN001, ANN201
    app.connect("missing-reference", _public_alias)
    app.add_directive("devices", _DocFacts)
    app.add_directive("properties", _DocFacts)
