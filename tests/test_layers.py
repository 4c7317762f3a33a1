"""The package's layers, read from its imports: no import circle, and nothing imports a module
above its own layer. Every import counts, the ones inside functions and under TYPE_CHECKING
included, and so do the backends the LLM layer registers by name. A change that breaks the
layering fails here, naming the import."""

from __future__ import annotations

import ast
from pathlib import Path

import llava_pose
from llava_pose.llm import BACKENDS

PACKAGE = Path(llava_pose.__file__).resolve().parent

# Bottom to top: a module may import its own layer and those below. The same order as the
# README's "How it is built".
LAYERS: list[list[str]] = [
    ["llava_pose"],  # the version
    ["llava_pose.errors"],
    [
        "llava_pose.records", "llava_pose.paths", "llava_pose.io", "llava_pose.images",
        "llava_pose.config", "llava_pose.progress", "llava_pose.lock", "llava_pose.forked",
        "llava_pose.extras", "llava_pose.skeleton", "llava_pose.lifetime",
        "llava_pose.confidence",
    ],
    [
        "llava_pose.pose", "llava_pose.context", "llava_pose.parse", "llava_pose.coco",
        "llava_pose.estimators",  # pose backends: images -> people with 17 keypoints
    ],
    [
        "llava_pose.names", "llava_pose.tasks", "llava_pose.prompts", "llava_pose.filters",
        "llava_pose.verify", "llava_pose.dataset",
        "llava_pose.folder", "llava_pose.sources",  # where images come from: COCO, contexts, a folder
    ],
    ["llava_pose.vlm"],  # vision-language models: families, loading, chat templates
    ["llava_pose.llm"],  # one layer for teacher, answerer and judge
    ["llava_pose.teachers", "llava_pose.stage"],
    [
        "llava_pose.generate", "llava_pose.answer", "llava_pose.lmms_export", "llava_pose.export",
        "llava_pose.ehpaub", "llava_pose.poseqa", "llava_pose.overlay", "llava_pose.train",
    ],
    ["llava_pose.view"],
    ["llava_pose.cli", "llava_pose.__main__", "llava_pose.train.__main__"],
]  # fmt: skip


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules `name` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            # `from . import captions` imports the submodule, not the package's own __init__
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != name:
                found.add(target)
    return found


def layer_of(name: str) -> int:
    best, depth = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    assert best >= 0, f"{name}: in no layer of tests/test_layers.py: add it to LAYERS"
    return best


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {name: imports(name, path, known) for name, path in known.items()}
    for import_path in BACKENDS.values():  # registered by name, imported when used
        edges["llava_pose.llm"].add(import_path.split(":")[0])
    return edges


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_nothing_imports_upward() -> None:
    upward = sorted(
        f"{name} -> {dep}"
        for name, deps in graph().items()
        for dep in deps
        if layer_of(dep) > layer_of(name)
    )
    assert upward == [], "imports that run upward:\n" + "\n".join(upward)


def test_there_is_no_import_circle() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert circles == [], f"import circles: {circles}"


def test_the_checker_sees_lazy_and_type_only_imports(tmp_path: Path) -> None:
    known = {"llava_pose.a": tmp_path / "a.py", "llava_pose.b": tmp_path / "b.py"}
    known["llava_pose.a"].write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import X\n"
        "def f():\n    from . import b\n"
    )
    assert imports("llava_pose.a", known["llava_pose.a"], known) == {"llava_pose.b"}
