"""A roadmap's ``imports`` and step recipes resolve against the roadmap file's folder, whatever the
current folder; a module named like a standard or installed one is refused; a user module's exit or
a user transform's error is one line (``modernize/user_modules.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modernize import load_roadmap
from modernize.errors import ConfigError
from modernize.kinds import REGISTRIES

from .conftest import TINY, recipe_text

KINDS = '''
from torch import nn
from modernize.kinds import register_act

@register_act("{name}", label="{label}")
def factory() -> nn.Module:
    return nn.{cls}()
'''


def _roadmap(folder: Path, imports: list[str], kind: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rm.toml"
    path.write_text(f'name = "m"\nbase = "resnet50"\nimports = {json.dumps(imports)}\n\n[[steps]]\nname = "r50"\n'
                    f'{extra}\n[[steps]]\nname = "act"\napply = {{transform = "act", kind = "{kind}"}}\n')
    return path


@pytest.fixture
def clean_kinds() -> object:
    before = {f: dict(r) for f, r in REGISTRIES.items()}
    yield None
    for f, r in REGISTRIES.items():
        r.clear()
        r.update(before[f])


@pytest.mark.parametrize("entry", ["../lab/labkinds_a", "../lab/labkinds_a.py", "../lab/pkg_kinds_a/"])
def test_a_shared_kinds_module_by_relative_path(tmp_path: Path, entry: str, monkeypatch: pytest.MonkeyPatch,
                                                clean_kinds: object) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "labkinds_a.py").write_text(KINDS.format(name="lab_a", label="lab A", cls="SiLU"))
    (lab / "pkg_kinds_a").mkdir()
    (lab / "pkg_kinds_a" / "__init__.py").write_text(KINDS.format(name="lab_a", label="lab A", cls="SiLU"))
    monkeypatch.chdir("/")
    rm = load_roadmap(_roadmap(tmp_path / "study", [entry], "lab_a"))
    assert rm["act"].spec.act == "lab_a"


def test_a_module_named_like_the_standard_library_is_refused(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(KINDS.format(name="shadow_json", label="j", cls="SiLU"))
    with pytest.raises(ConfigError, match=r"imports: 'json' .*standard library.*rename"):
        load_roadmap(_roadmap(tmp_path, ["json"], "shadow_json"))
    (tmp_path / "torch.py").write_text("")
    with pytest.raises(ConfigError, match=r"imports: 'torch' .*installed module"):
        load_roadmap(_roadmap(tmp_path, ["torch"], "relu"))


def test_modules_load_from_the_roadmap_folder_not_the_current_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  clean_kinds: object) -> None:
    """Two folders, each with its own ``samename_kinds.py``: each roadmap gets its own; a name
    beside the current folder but not beside the roadmap is refused."""
    for folder, cls in (("one", "SiLU"), ("two", "GELU")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "samename_kinds.py").write_text(KINDS.format(name=f"k_{folder}", label=folder, cls=cls))
    monkeypatch.chdir(tmp_path / "one")
    assert load_roadmap(_roadmap(tmp_path / "two", ["samename_kinds"], "k_two"))["act"].spec.act == "k_two"
    assert load_roadmap(_roadmap(tmp_path / "one", ["samename_kinds"], "k_one"))["act"].spec.act == "k_one"
    with pytest.raises(ConfigError, match=r"no module 'samename_kinds' in the roadmap's folder"):
        load_roadmap(_roadmap(tmp_path / "three", ["samename_kinds"], "k_one"))


def test_sys_exit_and_errors_in_user_code_are_one_line(tmp_path: Path, clean_kinds: object) -> None:
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    exits = r"'exits_on_import' \(.*exits_on_import.py:2, in <module>\) called sys.exit\(0\)"
    with pytest.raises(ConfigError, match=exits):
        load_roadmap(_roadmap(tmp_path, ["exits_on_import"], "relu"))
    (tmp_path / "bad_transform.py").write_text(
        "import sys\nfrom modernize import register_transform\n\n"
        "@register_transform('exits_tf', label='x')\ndef exits_tf(spec):\n    sys.exit(3)\n\n"
        "@register_transform('raises_tf', label='y')\ndef raises_tf(spec):\n    raise KeyError('oops')\n")
    for name, words in (("exits_tf", r"sys.exit\(3\)"), ("raises_tf", "KeyError")):
        path = tmp_path / f"{name}.toml"
        path.write_text(f'name = "m"\nimports = ["bad_transform"]\n[[steps]]\nname = "s"\napply = "{name}"\n')
        where = rf"step 's': transform '{name}' \(.*bad_transform.py:\d+, in .*\) .*{words}"
        with pytest.raises(ConfigError, match=where):
            load_roadmap(path)


def test_a_step_recipe_path_is_relative_to_the_roadmap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modernize.train.config import prepare_run

    study = tmp_path / "study"
    study.mkdir()
    (study / "mine.toml").write_text(recipe_text(TINY | {"lr": 0.5}))
    (study / "top.toml").write_text(recipe_text(TINY))
    rm = study / "rm.toml"
    rm.write_text('name = "m"\nrecipe = "top.toml"\n[[steps]]\nname = "a"\n[[steps]]\nname = "b"\n'
                  'recipe = "mine.toml"\n')
    monkeypatch.chdir(tmp_path)
    cfg = prepare_run(rm, data="synthetic:32", recipe=None, seeds=[0], out=tmp_path / "run", device="cpu")
    assert cfg.recipe.name == "top" and cfg.recipe_of(cfg.roadmap["b"]).lr == 0.5
