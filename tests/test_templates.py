from __future__ import annotations

from pathlib import Path

import pytest

TEMPLATES = sorted((Path(__file__).resolve().parent.parent / "templates").rglob("*.html"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: str(path.name))
def test_it_has_no_comment_that_would_show_on_the_page(template: Path):
    # Django's {# #} comments end at the line's end: one that spans lines is printed as text.
    for number, line in enumerate(template.read_text().splitlines(), start=1):
        if "{#" in line:
            assert "#}" in line[line.index("{#"):], f"{template.name}:{number} opens a {{# comment it does not close"


@pytest.mark.django_db
def test_every_page_names_an_icon_that_exists(client):
    from django.contrib.staticfiles import finders

    page = client.get("/login/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    assert finders.find("favicon.svg")
