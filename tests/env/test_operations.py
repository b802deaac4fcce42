"""Operation templates, the rewrite parser on adversarial replies, and user operation files."""

import json

import pytest

from teamsrl_jax.env.operations import (CLOSE_TAG, DEFAULT_NAMES, OPEN_TAG, OperationSet, load_operations,
                                        parse_rewrite)

OPS = OperationSet()
GOAL = "Write a poem in iambic meter."


def test_paper_action_order_and_templates():
    assert DEFAULT_NAMES == ("add_constraints", "deepening", "concretizing", "increase_reasoning_steps",
                             "complicate_input", "breadth")
    assert [op.kind for op in OPS.operations] == ["depth"] * 5 + ["breadth"]
    for i, template in enumerate(OPS.templates):
        assert template.count("{instruction}") == 1
        prompt = OPS.render(i, "Use {braces} and {instruction} literally.")
        assert "Use {braces} and {instruction} literally." in prompt and OPEN_TAG in prompt
    for i in range(5):
        assert "10 to 20 words" in OPS.templates[i] and "exactly as it is" in OPS.templates[i]


@pytest.mark.parametrize("reply, expected", [
    (f"{OPEN_TAG}{GOAL}{CLOSE_TAG}", GOAL),
    (f"{OPEN_TAG}\n  {GOAL}\n{CLOSE_TAG}\nAnything after the tags is ignored.", GOAL),
    # chatter, quotes inside the tags, and a trailing note
    (f"Sure! Here's the rewritten instruction:\n\n{OPEN_TAG}\n\"{GOAL}\"\n{CLOSE_TAG}\n\nNote: I added a meter.", GOAL),
    # the model echoes the whole template (its empty tag pair) before answering
    (OPS.render(0, "Write a poem.") + f"\n{OPEN_TAG}{GOAL}{CLOSE_TAG}", GOAL),
    (f"{OPEN_TAG}{CLOSE_TAG}\n{OPEN_TAG}{GOAL}", GOAL),                       # unclosed last tag
    ("#Rewritten Instruction#:\n" + GOAL, GOAL),
    ("#Given Prompt#: Write a poem.\n#Rewritten Prompt#: " + GOAL, GOAL),
    ("**Rewritten Prompt:** " + GOAL, GOAL),
    ("Rewritten Prompt: '" + GOAL + "'", GOAL),
    ("The rewritten instruction is: " + GOAL, GOAL),
    ("New instruction - " + GOAL, GOAL),
    ("Sure, here is the rewritten instruction: " + GOAL, GOAL),
    ("Certainly! Here is a harder version of the prompt:\n" + GOAL, GOAL),
    ("Okay.\n" + GOAL + " (Note: I added the meter requirement.)", GOAL),
    ("Sure, I can help with that.\n" + GOAL, GOAL),
    ("```\n" + GOAL + "\n```", GOAL),
    ("```text\nRewritten instruction: " + GOAL + "\n```", GOAL),
    ("“" + GOAL + "”", GOAL),
    ("**" + GOAL + "**", GOAL),
    (GOAL + "\n\nExplanation: I added a meter requirement.", GOAL),
    (GOAL + "\n\n**Changes made:** the rewritten instruction asks for a meter.", GOAL),
    (GOAL + "\n\nThis rewritten instruction adds a constraint on meter.", GOAL),
    # content that merely looks like chatter, notes or quotes stays
    ("Here is a list of numbers: 3, 1, 2. Sort them.", "Here is a list of numbers: 3, 1, 2. Sort them."),
    ("Great Britain has many castles. Name five.", "Great Britain has many castles. Name five."),
    ('"a" and "b" are letters; compare them.', '"a" and "b" are letters; compare them.'),
    ("Sum the column.\n\n| kg |\n|---|\n| 2 |\n\nNote: values are in kg.",
     "Sum the column.\n\n| kg |\n|---|\n| 2 |\n\nNote: values are in kg."),
    ("Explain it.\n```python\nprint(1)\n```", "Explain it.\n```python\nprint(1)\n```"),
    ("Sort it.\nInput: [2,1]\nOutput: [1,2]\nExplanation: 1 comes first.",
     "Sort it.\nInput: [2,1]\nOutput: [1,2]\nExplanation: 1 comes first."),
    ("Note: i is an index.\nReturn nums[i].", "Note: i is an index.\nReturn nums[i]."),
    ("Alright, here is a question for you. Which film won?\n\nA) X B) Y",
     "Alright, here is a question for you. Which film won?\n\nA) X B) Y"),
    ("Sure, write a limerick.", "Sure, write a limerick."),
    # nothing usable
    ("", None), ("   \n ", None), (f"{OPEN_TAG}{CLOSE_TAG}", None), ('"..."', None), ("**  **", None),
    ("Rewritten Prompt:", None),
])
def test_parse_rewrite(reply, expected):
    assert parse_rewrite(reply) == expected
    assert OPS.parse(reply) == expected


@pytest.mark.parametrize("name, key", [("teams_rl_original_generated_1386.jsonl", "instruction"),
                                       ("wizardlm_testset_218.jsonl", "Instruction")])
def test_parser_leaves_real_clean_instructions_unchanged(shared_data, name, key):
    """Real evolved instructions (already clean) must come out of the parser exactly as they went in."""
    rows = [json.loads(line) for line in (shared_data / "reference" / name).read_text().splitlines()]
    changed = [r[key][:80] for r in rows if parse_rewrite(r[key]) != r[key].strip()]
    assert len(rows) > 200 and changed == []


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_user_operations_merge_and_replace(tmp_path):
    path = _write(tmp_path, "ops.yaml", """
- name: deepening
  kind: depth
  template: "Go deeper: {instruction}"
- name: counterfactual
  kind: depth
  template: "Ask what would change if a premise were false.\\n{instruction}\\nBraces {stay}."
""")
    merged = OperationSet.from_file(path)
    assert merged.names == DEFAULT_NAMES + ("counterfactual",)
    assert merged.render(1, "X") == "Go deeper: X"
    assert merged.render(6, "X").endswith("X\nBraces {stay}.")
    replaced = OperationSet.from_file(path, mode="replace")
    assert replaced.names == ("deepening", "counterfactual")
    json_path = _write(tmp_path, "ops.json", [{"name": "b2", "kind": "breadth", "template": "New: {instruction}"}])
    assert OperationSet.from_file(json_path).names[-1] == "b2"


@pytest.mark.parametrize("content, message", [
    ([{"name": "x", "kind": "depth", "template": "no placeholder"}], "operations[0].template: must contain"),
    ([{"name": "x", "kind": "sideways", "template": "{instruction}"}], "operations[0].kind: must be one of"),
    ([{"name": "x", "kind": "depth"}], "operations[0].template: missing"),
    ([{"name": "x", "kind": "depth", "template": "{instruction}", "tmplate": ""}], "operations[0]: unknown field"),
    ([{"name": "x", "kind": "depth", "template": "{instruction}"},
      {"name": "x", "kind": "depth", "template": "{instruction}"}], "operations[1].name: duplicate"),
    ([{"name": "has space", "kind": "depth", "template": "{instruction}"}], "operations[0].name:"),
    (["just a string"], "operations[0]: expected a mapping"),
    ({"name": "x"}, "expected a non-empty list"),
    ([], "expected a non-empty list"),
    ("[{not json", "not valid JSON"),
])
def test_user_operations_errors_name_file_and_field(tmp_path, content, message):
    path = _write(tmp_path, "bad.json", content)
    with pytest.raises(ValueError) as err:
        load_operations(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value) and "\n" not in str(err.value)


def test_user_operations_yaml_syntax_and_mode_errors(tmp_path):
    path = _write(tmp_path, "bad.yaml", "- name: x\n  template: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: not valid YAML"):
        load_operations(path)
    with pytest.raises(ValueError, match="mode"):
        OperationSet.from_file(path, mode="append")
    with pytest.raises(ValueError, match="cannot read"):
        load_operations(tmp_path / "missing.yaml")
