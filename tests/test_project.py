"""The project's promises: README code runs, environment.yml matches pyproject, make targets exist."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_snippets_run():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def package_name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_has_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {package_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {package_name(d) for d in env["dependencies"] if isinstance(d, str)}
    conda = {"torch" if name == "pytorch" else name for name in conda}
    assert wanted <= conda, f"missing from environment.yml: {sorted(wanted - conda)}"
    assert env["channels"] == ["conda-forge"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert '-e ".[dev]"' in pip_section or "-e .[dev]" in pip_section


def test_readme_commands_are_make_targets_and_ci_runs_make_test():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, flags=re.M)
        assert f"make {target}" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()


# docs/ARCHITECTURE.md's layers: a module may import its own layer's base modules and the layers below
LAYERS = {
    "boxes": 1,
    "anchors": 1,
    "gmm": 1,
    "atomic": 1,
    "scenes": 1,
    "data": 2,
    "model": 2,
    "assign": 2,
    "losses": 3,
    "viz": 3,
    "train": 4,
    "compare": 5,
    "reference": 6,
    "exercises": 7,
    "cli": 6,
    "demo": 5,
}


def test_imports_point_down_the_layers_of_the_house_plan():
    package = ROOT / "lad_edu"
    wrong = []
    for path in package.rglob("*.py"):
        top = path.relative_to(package).parts[0].removesuffix(".py")
        if top not in LAYERS:
            continue
        for imported in re.findall(r"^\s*(?:from|import) lad_edu\.(\w+)", path.read_text(), flags=re.M):
            if imported != top and LAYERS[imported] >= LAYERS[top] and LAYERS[top] > 1:
                wrong.append(f"{path.relative_to(ROOT)} imports lad_edu.{imported}")
            if LAYERS[top] == 1 and LAYERS[imported] > 1:
                wrong.append(f"{path.relative_to(ROOT)} imports lad_edu.{imported}")
    assert not wrong, wrong
    assert {p.name.removesuffix(".py") for p in package.iterdir() if p.name != "__init__.py"} - {
        "__pycache__",
        "configs",
        "assets",
    } <= set(LAYERS), "a new top-level module needs its layer in docs/ARCHITECTURE.md and LAYERS"


def test_no_file_cites_notes_outside_the_repository():
    cited = re.compile(r"assigners\.md|STYLE\.md|shared/|(?<!docs/)ARCHITECTURE\.md")
    files = [*ROOT.glob("lad_edu/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("notebooks/*.ipynb")]
    files += [*ROOT.glob("tests/*.py"), ROOT / "README.md"]
    offending = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        if path.name != "test_project.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if cited.search(line)
    ]
    assert not offending, offending
