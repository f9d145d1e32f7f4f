"""The execution-wide conversation and memorize_to selection (dipeo_cli.memory)."""

from __future__ import annotations

import pytest

from dipeo_cli.memory import (
    ALL,
    GOLDFISH,
    PAIRS,
    SENT_BY_ME,
    SENT_TO_ME,
    SYSTEM_AND_ME,
    Conversation,
    as_chat,
    is_free_text,
    last_text,
    memory_keyword,
)


def debate() -> Conversation:
    """Two exchanges of A, one of B, in this order: A, B, A."""
    conv = Conversation()
    conv.record(node="Opt", person_id="a", person_label="A", prompt="argue", reply="a1")
    conv.record(node="Pes", person_id="b", person_label="B", prompt="counter", reply="b1")
    conv.record(node="Opt", person_id="a", person_label="A", prompt="again", reply="a2")
    return conv


def contents(messages: list) -> list[str]:
    return [m.content for m in messages]


@pytest.mark.parametrize(
    ("value", "keyword"),
    [
        (None, ALL),
        ("", ALL),
        ("ALL_MESSAGES", ALL),
        ("full", ALL),
        ("GOLDFISH", GOLDFISH),
        ("goldfish", GOLDFISH),
        ("SENT_TO_ME", SENT_TO_ME),
        ("ONLY_ME", SENT_TO_ME),
        ("SENT_BY_ME", SENT_BY_ME),
        ("ONLY_I_SENT", SENT_BY_ME),
        ("CONVERSATION_PAIRS", PAIRS),
        ("FOCUSED", PAIRS),
        ("SYSTEM_AND_ME", SYSTEM_AND_ME),
        ("minimal", SYSTEM_AND_ME),
        ("remember all", ALL),
        ("Only prior sections this file imports", ALL),
    ],
)
def test_memorize_to_keywords(value: str | None, keyword: str) -> None:
    assert memory_keyword(value) == keyword


def test_free_text_criteria_are_told_apart_from_keywords() -> None:
    assert is_free_text("remember all")
    assert not is_free_text("ALL_MESSAGES") and not is_free_text(None) and not is_free_text("")


def test_selection_per_keyword() -> None:
    conv = debate()
    assert contents(conv.select("a", None)) == ["argue", "a1", "counter", "b1", "again", "a2"]
    assert contents(conv.select("a", "ALL_MESSAGES")) == contents(conv.select("a", None))
    assert conv.select("a", "GOLDFISH") == []
    assert contents(conv.select("a", "SENT_TO_ME")) == ["argue", "a1", "again", "a2"]
    assert contents(conv.select("b", "ONLY_ME")) == ["counter", "b1"]
    assert contents(conv.select("a", "SENT_BY_ME")) == ["a1", "a2"]
    assert contents(conv.select("a", "SYSTEM_AND_ME")) == ["a1", "a2"]
    assert contents(conv.select("a", "CONVERSATION_PAIRS")) == ["argue", "a1", "again", "a2"]
    assert contents(conv.select("a", "something only an LLM could judge")) == contents(
        conv.select("a", None)
    )


def test_pairs_leave_out_unanswered_prompts_and_inputs() -> None:
    conv = debate()
    conv.merge({"messages": [{"content": "a note", "to": "a"}]}, source="Notes")
    assert contents(conv.select("a", "SENT_TO_ME"))[-1] == "a note"
    assert contents(conv.select("a", "CONVERSATION_PAIRS")) == ["argue", "a1", "again", "a2"]


def test_at_most_keeps_the_last_messages() -> None:
    conv = debate()
    assert contents(conv.select("a", None, at_most=3)) == ["b1", "again", "a2"]
    assert contents(conv.select("a", "SENT_BY_ME", at_most=1)) == ["a2"]
    assert contents(conv.select("a", None, at_most=100)) == contents(conv.select("a", None))


def test_ignore_person_drops_their_messages_and_the_prompts_they_were_given() -> None:
    conv = debate()
    assert contents(conv.select("judge", None, ignore={"b"})) == ["argue", "a1", "again", "a2"]
    # a person never ignores itself
    assert contents(conv.select("b", "SENT_BY_ME", ignore={"b"})) == ["b1"]


def test_as_chat_roles_and_speaker_labels() -> None:
    conv = debate()
    assert as_chat(conv.select("a", None), "a") == [
        ("user", "argue"),
        ("assistant", "a1"),
        ("user", "[to B]: counter"),
        ("user", "[B]: b1"),
        ("user", "again"),
        ("assistant", "a2"),
    ]
    assert as_chat(conv.select("b", None), "b")[:2] == [
        ("user", "[to A]: argue"),
        ("user", "[A]: a1"),
    ]


def test_merge_adds_conversation_state_messages_once() -> None:
    conv = debate()
    snapshot = [m.as_dict("a") for m in conv.messages]
    assert conv.merge({"messages": snapshot}, source="Opt") == 0  # same ids: nothing new
    foreign = {"messages": [{"role": "assistant", "content": "hello"}, "plain text"]}
    assert conv.merge(foreign, source="Loader") == 2
    assert conv.merge(foreign, source="Loader") == 0  # no ids: same sender and text
    added = conv.messages[-2:]
    assert [(m.kind, m.sender_label, m.content) for m in added] == [
        ("input", "Loader", "hello"),
        ("input", "Loader", "plain text"),
    ]
    assert as_chat(added, "a") == [("user", "[Loader]: hello"), ("user", "[Loader]: plain text")]
    assert conv.merge("not a conversation", source="x") == 0


def test_messages_from_another_run_keep_their_ids_and_senders() -> None:
    conv = Conversation()
    other = debate()
    conv.merge({"messages": [m.as_dict() for m in other.messages]}, source="Sub")
    assert [m.id for m in conv.messages] == [m.id for m in other.messages]
    assert contents(conv.select("a", "SENT_BY_ME")) == ["a1", "a2"]
    asked, answered = conv.record(node="N", person_id="a", person_label="A", prompt="p", reply="r")
    assert asked.id not in {m.id for m in other.messages}


def test_as_dict_and_last_text() -> None:
    conv = Conversation()
    asked, answered = conv.record(
        node="Ask", person_id="p", person_label="P", prompt="q", reply="r"
    )
    assert answered.as_dict("p") == {
        "id": answered.id,
        "kind": "reply",
        "from": "p",
        "to": None,
        "from_label": "P",
        "to_label": "Ask",
        "node": "Ask",
        "role": "assistant",
        "content": "r",
    }
    assert asked.as_dict("p")["role"] == "user"
    value = {"messages": [asked.as_dict("p"), answered.as_dict("p")]}
    assert last_text(value) == "r"
    assert last_text({"messages": [], "last_message": "x"}) == "x"
    assert last_text({"messages": []}) == "" and last_text("text") == ""
