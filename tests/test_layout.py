"""The architecture's rules, checked on the source: short functions, layering, public imports only."""
import ast
import importlib
import pathlib
import pkgutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "mlic_pipe").rglob("*.py")) + sorted((ROOT / "kernels").rglob("*.py"))
MAX_FUNCTION_LINES = 60
KERNEL_BODIES = {("fused_render.py", "_render_kernel")}  # the Triton kernel is one body by nature


def _tree(path):
    return ast.parse(path.read_text(), filename=str(path))


def _imports(path):
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_no_function_is_longer_than_60_lines_outside_the_kernel_body():
    long = []
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (path.name, node.name) not in KERNEL_BODIES:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_models_do_not_import_losses_and_kernels_import_only_public_names():
    for path in SOURCES:
        for module, names in _imports(path):
            if "models" in path.parts:
                assert not module.startswith("mlic_pipe.losses"), path
            if path.parent.name == "kernels" and module.startswith("mlic_pipe.") and \
                    not module.startswith("mlic_pipe.kernels"):
                private = [name for name in names if name.startswith("_")]
                assert not private, (path, module, private)


def _module_name(path):
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[0] == "kernels":
        parts = ["mlic_pipe", "kernels", *parts[1:]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_two_modules_import_each_other():
    """Not even for type hints only: a pair of modules that need each other is one idea split in two (or a name
    in the wrong module). Package __init__ files, which re-export, are left out."""
    modules = {_module_name(path): path for path in SOURCES if path.name != "__init__.py"}
    imports = {name: {module for module, _ in _imports(path)} for name, path in modules.items()}
    pairs = sorted({tuple(sorted((a, b))) for a, found in imports.items() for b in found
                    if b in imports and a in imports[b] and a != b})
    assert not pairs, pairs


@pytest.mark.parametrize("package", ["mlic_pipe", "mlic_pipe.mix", "mlic_pipe.kernels", "mlic_pipe.training",
                                     "mlic_pipe.models", "mlic_pipe.datasets"])
def test_no_module_is_shadowed_by_a_name_its_package_exports(package):
    imported = importlib.import_module(package)
    for info in pkgutil.iter_modules(imported.__path__):
        exported = getattr(imported, info.name, None)
        if exported is not None:  # `import package.name` must give the module, not a function
            assert exported is importlib.import_module(f"{package}.{info.name}"), f"{package}.{info.name}"
