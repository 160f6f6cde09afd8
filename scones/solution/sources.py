"""The Lambda sources of a solution: each file or folder given, the handlers in it (top-level functions taking
`(event, context)`), and the zip a function is created from. Read with `ast`: nothing of the solution is
imported or run on the host."""

from __future__ import annotations

import ast
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

FOLDER_ENTRY_FILES = ("lambda_function.py", "app.py", "handler.py", "index.py", "main.py")  # looked for in order
SKIPPED_PARTS = ("__pycache__", ".git", ".venv", "node_modules")


class SolutionSourceError(ValueError):
    """A source given is missing, not Python, does not parse, or holds no handler; the message says which."""


@dataclass(frozen=True)
class Handler:
    """One handler of a solution: the function `function` in `file`, shipped in the zip of `source`."""

    source: Path  # the file or folder given on the command line: one zip each
    file: Path  # the .py file defining the handler
    function: str  # the handler function's name
    names: tuple[str, ...]  # what a definition's function name may be matched with: folder or file, then function
    tree: ast.Module  # the file's syntax tree, for the trap checks

    @property
    def module(self) -> str:
        """The module the Lambda runtime imports: the file's path inside the zip, dotted, without `.py`."""
        root = self.source if self.source.is_dir() else self.file.parent
        return ".".join(self.file.relative_to(root).with_suffix("").parts)

    @property
    def handler(self) -> str:
        """The function's Handler setting, as Lambda reads it (`module.function`)."""
        return f"{self.module}.{self.function}"

    @property
    def label(self) -> str:
        return f"{self.file.name}:{self.function}" if not self.source.is_dir() else f"{self.source.name}/{self.handler}"

    def function_node(self) -> ast.FunctionDef:
        return next(n for n in self.tree.body if isinstance(n, ast.FunctionDef) and n.name == self.function)


def parse(file: Path) -> ast.Module:
    try:
        return ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except SyntaxError as e:
        raise SolutionSourceError(f"{file}: line {e.lineno}: {e.msg}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SolutionSourceError(f"{file}: {e}") from e


def handler_functions(tree: ast.Module) -> list[str]:
    """Top-level functions taking exactly two positional parameters, `(event, context)` by any names."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            arguments = node.args
            positional = [*arguments.posonlyargs, *arguments.args]
            required = len(positional) - len(arguments.defaults)
            if len(positional) == 2 and required == 2 and not arguments.kwonlyargs:
                found.append(node.name)
    return found


def folder_entry(folder: Path) -> list[Path]:
    """The file(s) of a folder holding handlers: a usual entry file if there is one, else every top-level .py."""
    for name in FOLDER_ENTRY_FILES:
        if (folder / name).is_file():
            return [folder / name]
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("test"))


def read_sources(paths: list[Path]) -> list[Handler]:
    """Every handler in the sources given, in the order given (within a file, in the file's order)."""
    handlers: list[Handler] = []
    for source in paths:
        if not source.exists():
            raise SolutionSourceError(f"{source}: no such file or folder")
        if source.is_file() and source.suffix != ".py":
            raise SolutionSourceError(f"{source}: not a Python file (the Lambdas must be Python sources)")
        files = folder_entry(source) if source.is_dir() else [source]
        found_here = []
        for file in files:
            tree = parse(file)
            functions = handler_functions(tree)
            for function in functions:
                if source.is_dir():
                    names = (source.name, function) if len(files) == 1 else (source.name, file.stem, function)
                else:
                    names = (file.stem, function)
                found_here.append((file, function, names, tree))
        if not found_here:
            raise SolutionSourceError(
                f"{source}: no handler found (a top-level `def NAME(event, context)`)"
                + (f" in {', '.join(f.name for f in files)}" if source.is_dir() else "")
            )
        several = len(found_here) > 1
        for file, function, names, tree in found_here:
            # A file or folder holding several handlers names none of them: each goes by its function's name.
            handlers.append(Handler(source, file, function, names[-1:] if several else names, tree))
    return handlers


def zip_source(source: Path) -> bytes:
    """The deployment package of `source`: the file alone at the zip's root, or the folder's contents."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if source.is_file():
            archive.write(source, source.name)
        else:
            for path in sorted(source.rglob("*")):
                relative = path.relative_to(source)
                if path.is_file() and not any(part in SKIPPED_PARTS for part in relative.parts):
                    archive.write(path, str(relative))
    return buffer.getvalue()


_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
# Words that say nothing about which step a name is: dropped before names are compared.
NOISE_WORDS = frozenset({"lambda", "handler", "function", "fn", "func", "step", "scones", "udacity", "project"})


def name_key(name: str) -> str:
    """`serializeImageData`, `serialize_image_data` and `Serialize-Image-Data-Lambda` all give `serializeimagedata`."""
    words = [w.lower() for w in _WORD.findall(name)]
    return "".join(w for w in words if w not in NOISE_WORDS)
