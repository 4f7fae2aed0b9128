"""The README's variable table says what meta/argument_specs.yml and defaults/main.yml say."""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import variables_table  # noqa: E402

ROLE = ROOT / "roles" / "django_celery"


def spec_options() -> dict:
    return yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"][
        "main"
    ]["options"]


def test_readme_variable_table_matches_argument_specs():
    readme = variables_table.readme_table((ROOT / "README.md").read_text())
    assert readme == variables_table.table(), (
        "README.md's variable table is out of date: run python scripts/variables_table.py --write"
    )


def test_every_default_variable_is_in_argument_specs():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert sorted(defaults) == sorted(spec_options())


def test_argument_specs_defaults_equal_the_role_defaults():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    mismatched = {
        name: (spec.get("default"), defaults.get(name))
        for name, spec in spec_options().items()
        if spec.get("default") != defaults.get(name)
    }
    assert mismatched == {}


def test_every_variable_has_a_description():
    assert [name for name, spec in spec_options().items() if not spec.get("description")] == []
