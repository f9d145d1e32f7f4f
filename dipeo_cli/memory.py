"""The execution-wide conversation, and what each person sees of it (`memorize_to`).

One Conversation per run (a run-wide service, shared with sub-diagrams): every person call
appends the prompt (from the node to its person) and the reply (from the person), each with
the sender's and recipient's ids and labels. Conversation-state inputs add their messages
(deduplicated by id, or by sender and text when they have no id).

What a person sees before its new prompt, by `memorize_to` (case-insensitive; DiPeO's
`memory_profile` names in brackets):

    (empty)                            every message of the conversation
    ALL_MESSAGES (FULL)                every message
    GOLDFISH                           nothing
    SENT_TO_ME (ONLY_ME)               messages to or from this person
    SENT_BY_ME (ONLY_I_SENT)           this person's own replies
    CONVERSATION_PAIRS (FOCUSED)       this person's prompt/reply pairs
    SYSTEM_AND_ME (MINIMAL)            this person's own replies
    any other text                     every message: DiPeO would have made an extra LLM call
                                       to select messages matching the text; we do not

then `ignore_person` drops the messages sent by (and the prompts sent to) the persons it names,
and `at_most` keeps the last N. In what is sent, the person's own replies have role assistant;
everything else has role user, prefixed with who spoke (`[Optimist]: ...`, and
`[to Judge]: ...` for a prompt another person was given) so the model knows who said what.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dipeo_cli.values import to_text

GOLDFISH = "GOLDFISH"
ALL = "ALL_MESSAGES"
SENT_TO_ME = "SENT_TO_ME"
SENT_BY_ME = "SENT_BY_ME"
PAIRS = "CONVERSATION_PAIRS"
SYSTEM_AND_ME = "SYSTEM_AND_ME"

_KEYWORDS = {
    "GOLDFISH": GOLDFISH,
    "ALL_MESSAGES": ALL,
    "FULL": ALL,
    "SENT_TO_ME": SENT_TO_ME,
    "ONLY_ME": SENT_TO_ME,
    "SENT_BY_ME": SENT_BY_ME,
    "ONLY_I_SENT": SENT_BY_ME,
    "CONVERSATION_PAIRS": PAIRS,
    "FOCUSED": PAIRS,
    "SYSTEM_AND_ME": SYSTEM_AND_ME,
    "MINIMAL": SYSTEM_AND_ME,
}

SERVICE_NAME = "conversation"


def memory_keyword(memorize_to: str | None) -> str:
    """The selection a `memorize_to` value means: one of the constants above. Empty and
    free-text criteria mean ALL_MESSAGES (see the module docstring)."""
    if not memorize_to or not memorize_to.strip():
        return ALL
    key = memorize_to.strip().upper().replace(" ", "_").replace("-", "_")
    return _KEYWORDS.get(key, ALL)


def is_free_text(memorize_to: str | None) -> bool:
    """A criterion DiPeO would have handed to an LLM selector (not a keyword)."""
    if not memorize_to or not memorize_to.strip():
        return False
    key = memorize_to.strip().upper().replace(" ", "_").replace("-", "_")
    return key not in _KEYWORDS


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    kind: str  # "prompt" (node -> person), "reply" (person -> node) or "input" (from an arrow)
    sender: str | None  # person id of a reply; None for prompts and anonymous inputs
    recipient: str | None  # person id a prompt was for
    sender_label: str  # who spoke: the person's label, or the node's for prompts
    recipient_label: str
    node: str  # label of the node that produced it
    content: str

    def concerns(self, person_id: str) -> bool:
        return self.sender == person_id or self.recipient == person_id

    def as_dict(self, viewer: str | None = None) -> dict[str, Any]:
        """The message as conversation_state arrows carry it (role as `viewer` sees it)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "from": self.sender,
            "to": self.recipient,
            "from_label": self.sender_label,
            "to_label": self.recipient_label,
            "node": self.node,
            "role": "assistant" if viewer is not None and self.sender == viewer else "user",
            "content": self.content,
        }


class Conversation:
    """The messages of one execution, in order. Appends happen between awaits, so concurrent
    person calls never interleave a prompt and its reply."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._ids: set[str] = set()
        self._texts: set[tuple[str | None, str]] = set()
        self._counter = itertools.count(1)

    def __len__(self) -> int:
        return len(self.messages)

    def _add(self, message: Message) -> Message:
        self.messages.append(message)
        self._ids.add(message.id)
        self._texts.add((message.sender, message.content))
        return message

    def _new_id(self) -> str:
        while True:
            candidate = f"m{next(self._counter)}"
            if candidate not in self._ids:
                return candidate

    def record(
        self,
        *,
        node: str,
        person_id: str,
        person_label: str,
        prompt: str,
        reply: str,
    ) -> tuple[Message, Message]:
        """Append one exchange: the node's prompt to the person, and the person's reply."""
        asked = self._add(
            Message(self._new_id(), "prompt", None, person_id, node, person_label, node, prompt)
        )
        answered = self._add(
            Message(self._new_id(), "reply", person_id, None, person_label, node, node, reply)
        )
        return asked, answered

    def merge(self, value: Any, *, source: str) -> int:
        """Add the messages of a conversation-state value (`{"messages": [...]}` or a list);
        return how many were new. Messages already here (same id; or, without an id, same
        sender and text) are skipped."""
        items = value.get("messages") if isinstance(value, dict) else value
        if not isinstance(items, list):
            return 0
        added = 0
        for item in items:
            message = self._from_value(item, source)
            if message is not None:
                self._add(message)
                added += 1
        return added

    def _from_value(self, item: Any, source: str) -> Message | None:
        if isinstance(item, dict):
            content = item.get("content")
            text = content if isinstance(content, str) else to_text(content)
            given_id = item.get("id")
            sender = item.get("from") or item.get("from_person_id") or item.get("sender")
            sender = str(sender) if sender else None
            if given_id is not None:
                if str(given_id) in self._ids:
                    return None
            elif (sender, text) in self._texts:
                return None
            recipient = item.get("to") or item.get("to_person_id")
            kind = item["kind"] if item.get("kind") in ("prompt", "reply") else "input"
            return Message(
                id=str(given_id) if given_id is not None else self._new_id(),
                kind=kind,
                sender=sender,
                recipient=str(recipient) if recipient else None,
                sender_label=str(item.get("from_label") or item.get("label") or sender or source),
                recipient_label=str(item.get("to_label") or ""),
                node=str(item.get("node") or source),
                content=text,
            )
        text = to_text(item)
        if (None, text) in self._texts:
            return None
        return Message(self._new_id(), "input", None, None, source, "", source, text)

    def select(
        self,
        person_id: str,
        memorize_to: str | None,
        *,
        at_most: int | None = None,
        ignore: Iterable[str] = (),
    ) -> list[Message]:
        """What `person_id` sees of the conversation (module docstring)."""
        return select_messages(
            self.messages, person_id, memorize_to, at_most=at_most, ignore=ignore
        )


def select_messages(
    messages: list[Message],
    person_id: str,
    memorize_to: str | None,
    *,
    at_most: int | None = None,
    ignore: Iterable[str] = (),
) -> list[Message]:
    keyword = memory_keyword(memorize_to)
    if keyword == GOLDFISH:
        return []
    if keyword == ALL:
        chosen = list(messages)
    elif keyword == SENT_TO_ME:
        chosen = [m for m in messages if m.concerns(person_id)]
    elif keyword == PAIRS:
        chosen = _pairs(messages, person_id)
    else:  # SENT_BY_ME, SYSTEM_AND_ME
        chosen = [m for m in messages if m.sender == person_id]
    ignored = set(ignore) - {person_id}
    if ignored:
        chosen = [m for m in chosen if m.sender not in ignored and m.recipient not in ignored]
    if at_most is not None:
        chosen = chosen[-at_most:] if at_most > 0 else []
    return chosen


def _pairs(messages: list[Message], person_id: str) -> list[Message]:
    """Prompts to the person that were answered, with their answers (in order)."""
    chosen: list[Message] = []
    waiting: Message | None = None
    for message in messages:
        if message.kind == "prompt" and message.recipient == person_id:
            waiting = message
        elif message.kind == "reply" and message.sender == person_id and waiting is not None:
            chosen += [waiting, message]
            waiting = None
    return chosen


def as_chat(messages: Iterable[Message], viewer: str) -> list[tuple[str, str]]:
    """(role, content) pairs as `viewer` sees them: its replies are the assistant's, the rest
    the user's, labelled with who spoke when it was not a prompt to the viewer."""
    chat: list[tuple[str, str]] = []
    for message in messages:
        if message.sender == viewer:
            chat.append(("assistant", message.content))
        elif message.kind == "prompt" and message.recipient == viewer:
            chat.append(("user", message.content))
        elif message.kind == "prompt":
            chat.append(("user", f"[to {message.recipient_label}]: {message.content}"))
        else:
            chat.append(("user", f"[{message.sender_label}]: {message.content}"))
    return chat


def conversation_of(resources: Any) -> Conversation:
    """The run's conversation (created on first use)."""
    return resources.service(SERVICE_NAME, Conversation, lambda _: None)  # type: ignore[no-any-return]


def is_conversation(value: Any) -> bool:
    """A conversation-state value: a dict with a list of messages."""
    return isinstance(value, dict) and isinstance(value.get("messages"), list)


def last_text(value: Any) -> str:
    """The text of a conversation value's last message ("" when it has none)."""
    if not is_conversation(value):
        return ""
    if isinstance(value.get("last_message"), str):
        return str(value["last_message"])
    messages = value["messages"]
    if not messages:
        return ""
    last = messages[-1]
    if isinstance(last, dict):
        content = last.get("content")
        return content if isinstance(content, str) else to_text(content)
    return to_text(last)
