"""DiPeO's prompt template language (dipeo_cli.prompt)."""

from __future__ import annotations

import pytest

from dipeo_cli.prompt import (
    PromptSyntaxError,
    check_prompt,
    format_value,
    is_truthy,
    render_prompt,
    template_names,
)


def render(source: str, **values: object) -> str:
    text, _ = render_prompt(source, values)
    return text


def test_variables_dot_paths_and_indexes() -> None:
    values = {
        "name": "Ada",
        "user": {"address": {"city": "Paris"}},
        "items": ["a", "b", "c"],
        "i": 2,
        "rows": [{"n": 1}, {"n": 2}],
    }
    text, warnings = render_prompt(
        "{{name}} {{ user.address.city }} {{items[0]}} {{items.1}} {{items[i]}} "
        "{{rows[1].n}} {{items[-1]}} {{user['address'].city}}",
        values,
    )
    assert text == "Ada Paris a b c 2 c Paris"
    assert warnings == []


def test_values_render_as_text_dicts_and_lists_as_indented_json() -> None:
    assert render("{{d}}", d={"k": [1, "é"]}) == '{\n  "k": [\n    1,\n    "é"\n  ]\n}'
    assert render("[{{none}}] {{n}} {{b}}", none=None, n=3.5, b=True) == "[] 3.5 True"
    assert format_value(("x",)) == '[\n  "x"\n]'


def test_unknown_variables_stay_as_written_with_a_warning() -> None:
    text, warnings = render_prompt(
        "Hi {{who}} and {{user.missing}} {{items[9]}}", {"user": {}, "items": []}
    )
    assert text == "Hi {{who}} and {{user.missing}} {{items[9]}}"
    assert warnings == [
        "unknown variable 'who' left as written",
        "unknown variable 'user.missing' left as written",
        "unknown variable 'items[9]' left as written",
    ]


def test_forms_that_are_not_template_syntax_stay_as_written() -> None:
    text, warnings = render_prompt('Answer {{ x | upper }} as {{"a": 1}}', {"x": "y"})
    assert text == 'Answer {{ x | upper }} as {{"a": 1}}'
    assert len(warnings) == 2 and "not a template form" in warnings[0]
    assert render("plain {single} braces") == "plain {single} braces"


def test_if_else_and_unless() -> None:
    source = "{{#if ok}}yes{{else}}no{{/if}}/{{#unless ok}}U{{else}}E{{/unless}}"
    assert render(source, ok=True) == "yes/E"
    assert render(source, ok=False) == "no/U"
    assert render(source) == "no/U"  # missing is false, without a warning
    assert render_prompt(source, {})[1] == []
    assert render("{{#if user.admin}}A{{/if}}", user={"admin": 1}) == "A"


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (None, False),
        ("", False),
        ("false", False),
        ("No", False),
        ("0", False),
        ("none", False),
        ("yes", True),
        (0, False),
        (2, True),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": 1}, True),
        (False, False),
    ],
)
def test_truthiness_is_dipeos(value: object, truthy: bool) -> None:
    assert is_truthy(value) is truthy


def test_each_with_this_index_first_last_and_else() -> None:
    source = "{{#each xs}}{{@index}}={{this}}{{#if @last}}.{{else}}, {{/if}}{{else}}none{{/each}}"
    assert render(source, xs=["a", "b"]) == "0=a, 1=b."
    assert render(source, xs=[]) == "none"


def test_each_over_dicts_exposes_item_keys_and_nests() -> None:
    people = [{"name": "Ada", "tags": ["x", "y"]}, {"name": "Bo", "tags": []}]
    source = (
        "{{#each people}}{{name}}:{{#each tags}}{{this}}{{@index}}{{/each}}{{this.name}};{{/each}}"
    )
    assert render(source, people=people) == "Ada:x0y1Ada;Bo:Bo;"
    assert render("{{#each d}}{{@key}}={{this}} {{/each}}", d={"a": 1, "b": 2}) == "a=1 b=2 "
    # the outer scope stays visible inside a loop
    assert render("{{#each xs}}{{prefix}}{{this}}{{/each}}", xs=[1, 2], prefix="#") == "#1#2"


def test_each_over_something_else_warns() -> None:
    text, warnings = render_prompt("[{{#each n}}x{{/each}}]", {"n": 5})
    assert text == "[]" and warnings == ["#each n: not a list (got int)"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{#if a}}open", "line 1: {{#if a}} is never closed (add {{/if}})"),
        ("x\n{{/each}}", "line 2: {{/each}} has no matching {{#each ...}}"),
        ("{{#if a}}\n{{/each}}", "closes {{#if a}} (opened on line 1); expected {{/if}}"),
        ("{{else}}", "{{else}} outside an if/unless/each block"),
        ("{{#if a}}1{{else}}2{{else}}3{{/if}}", "a second {{else}}"),
        ("{{#each}}x{{/each}}", "needs a name"),
    ],
)
def test_unbalanced_blocks_are_syntax_errors(source: str, message: str) -> None:
    problem = check_prompt(source)
    assert problem is not None and message in problem
    with pytest.raises(PromptSyntaxError):
        render_prompt(source, {})


def test_template_names_lists_the_top_level_names() -> None:
    source = "{{a.b}} {{#each xs}}{{this}}{{@index}}{{/each}}{{#if flag}}{{c[i]}}{{/if}}"
    assert template_names(source) == {"a", "xs", "flag", "c"}
    assert template_names("no names here") == set()
