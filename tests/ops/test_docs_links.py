"""The operator and integrator guides link only to files that exist, and the README links to them."""

from __future__ import annotations

import re

import pytest

from tests.ops.deployment import REPO

GUIDES = [
    "docs/operations.md",
    "docs/ehr-integration.md",
    "docs/clinical-content.md",
    "deploy/config/README.md",
]
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("guide", GUIDES)
def test_relative_links_resolve(guide):
    path = REPO / guide
    for target in _LINK.findall(path.read_text(encoding="utf-8")):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).resolve().exists(), f"{guide}: broken link {target}"


def test_readme_links_the_guides_and_stays_short():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for guide in ("docs/operations.md", "docs/ehr-integration.md", "docs/clinical-content.md"):
        assert f"]({guide})" in readme, guide
    assert len(readme.splitlines()) < 60


def test_docs_mention_only_real_cli_commands():
    from rls_cds.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    for guide in GUIDES:
        for sub in re.findall(r"`rls-cds ([a-z-]+)", (REPO / guide).read_text(encoding="utf-8")):
            assert sub in commands, f"{guide}: rls-cds {sub} does not exist"
