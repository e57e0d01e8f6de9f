from __future__ import annotations

import re

from environments.actions import create_environment, delete_environment, rename_environment
from environments.colors import PALETTE, generated_color, next_color, text_color_on
from tests.factories import local_cluster, make_environment, make_project


def test_it_gives_main_no_colour(main_env):
    assert main_env.color == ""


def test_it_gives_each_new_environment_the_first_unused_palette_colour(project, owner):
    staging = make_environment(project, by=owner, name="staging")
    qa = make_environment(project, by=owner, name="qa")
    assert (staging.color, qa.color) == PALETTE[:2]


def test_it_keeps_colours_distinct_across_a_project_past_the_palette(project, owner):
    for index in range(30):
        make_environment(project, by=owner, name=f"preview {index}")
    colors = [env.color for env in project.environments.exclude(name="main")]
    assert len(colors) == 30
    assert len(set(colors)) == 30
    assert all(re.fullmatch(r"#[0-9a-f]{6}", color) for color in colors)


def test_it_reuses_a_freed_colour(project, owner):
    staging = make_environment(project, by=owner, name="staging")
    make_environment(project, by=owner, name="qa")
    delete_environment(acting_user=owner, environment=staging)
    assert make_environment(project, by=owner, name="review").color == PALETTE[0]


def test_it_colours_each_project_on_its_own(space, owner, project):
    other = make_project(space, by=owner, name="other")
    assert make_environment(project, by=owner, name="a").color == PALETTE[0]
    assert make_environment(other, by=owner, name="a").color == PALETTE[0]


def test_it_keeps_the_colour_when_renamed(project, owner):
    staging = make_environment(project, by=owner, name="staging")
    rename_environment(acting_user=owner, environment=staging, name="Pre-production")
    staging.refresh_from_db()
    assert staging.color == PALETTE[0]


def test_it_gives_no_colour_to_an_environment_named_main_again(project, owner, main_env):
    delete_environment(acting_user=owner, environment=make_environment(project, by=owner, name="x"))
    main_env.delete()
    recreated = create_environment(acting_user=owner, project=project, name="Main", cluster=local_cluster())
    assert recreated.color == ""


def test_it_generates_well_separated_colours_past_the_palette():
    generated = [generated_color(index) for index in range(60)]
    assert len(set(generated)) == 60
    assert not set(generated) & set(PALETTE)
    assert next_color(PALETTE) == generated[0]
    assert next_color([*PALETTE, generated[0]]) == generated[1]


def test_it_has_a_palette_of_distinct_colours_that_show_on_white():
    assert len(set(PALETTE)) == len(PALETTE) == 12
    for color in PALETTE:
        # Dark text reads on every palette colour; none is so light that it vanishes on white.
        assert text_color_on(color) == "#111827"
        assert color.lower() not in {"#ffffff", "#fafafa"}
