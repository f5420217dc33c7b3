"""The plugin guide's reference part is generated from the docstrings and committed up to date."""

from advisor import docs, hookspecs


def test_committed_guide_is_up_to_date():
    assert docs.main(["--check"]) == 0, "run `python -m advisor.docs` and commit docs/plugins.md"


def test_reference_covers_every_hook_and_public_type():
    reference = docs.reference()
    names = [name for name in dir(hookspecs) if name.startswith("advisor_")]
    assert names and all(f"### `{name}(" in reference for name in names)
    for _, types in docs.PUBLIC_TYPES:
        assert all(name in reference for name in types)
    assert "every plugin's answer is collected" in reference and "'dict'" not in reference
