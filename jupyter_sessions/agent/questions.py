"""ask_user_question: the tool's input schema, and validation of the user's answers.

The model asks 1–4 questions; each has a short `header` (the tab label, ≤ 12 chars), the full
`question`, and either no options (free text) or 2–4 options with descriptions, plus `multiSelect`.
A single-select question always accepts an "Other" free-text answer as well.

Answers arrive from `POST /sessions/{id}/answers` as one entry per question, in order: a string
(free text, an option's label, or an Other text for single-select) or a list of labels
(multi-select). Anything else is an `AnswerError`, which the API turns into a 422.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TOOL_NAME = "ask_user_question"


class AnswerError(ValueError):
    """The answers do not fit the pending question; the message is meant for the user."""


class Option(BaseModel):
    model_config = ConfigDict(extra="ignore")

    label: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=1000)


class Question(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    question: str = Field(min_length=1, max_length=2000)
    header: str = Field(min_length=1, max_length=12)
    options: list[Option] = Field(default_factory=list)
    multiSelect: bool = False

    @field_validator("options")
    @classmethod
    def _zero_or_two_to_four(cls, v: list[Option]) -> list[Option]:
        if len(v) == 1 or len(v) > 4:
            raise ValueError("give either no options (free text) or 2 to 4 options")
        labels = [o.label for o in v]
        if len(set(labels)) != len(labels):
            raise ValueError("option labels must be distinct")
        return v


class AskInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    questions: list[Question] = Field(min_length=1, max_length=4)


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "minItems": 1,
            "maxItems": 4,
            "description": "1 to 4 questions; each is shown as a tab in the user's question panel.",
            "items": {
                "type": "object",
                "properties": {
                    "question": {"type": "string", "description": "The full question, ending with '?'."},
                    "header": {"type": "string", "maxLength": 12,
                               "description": "Very short tab label (at most 12 characters), e.g. 'Database'."},
                    "options": {
                        "type": "array",
                        "maxItems": 4,
                        "description": "0 options for a free-text answer, or 2 to 4 choices. "
                                       "Single-select questions always also offer the user an 'Other' text box.",
                        "items": {
                            "type": "object",
                            "properties": {
                                "label": {"type": "string", "description": "1 to 5 words."},
                                "description": {"type": "string", "description": "What choosing this means."},
                            },
                            "required": ["label", "description"],
                        },
                    },
                    "multiSelect": {"type": "boolean", "description": "Allow several options to be chosen."},
                },
                "required": ["question", "header", "options", "multiSelect"],
            },
        }
    },
    "required": ["questions"],
}

DESCRIPTION = (
    "Ask the user 1-4 clarifying questions and wait for the answers. Use it when a decision is "
    "genuinely the user's (requirements, trade-offs, preferences), not for things you can find out "
    "with the other tools. The run pauses until the user answers."
)


def parse_questions(raw: Any) -> list[dict]:
    """Validate the model's tool input; raise ValueError with a message the model can act on."""
    try:
        parsed = AskInput.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}" for err in e.errors()
        )
        raise ValueError(f"invalid ask_user_question input: {problems}") from None
    return [q.model_dump() for q in parsed.questions]


def validate_answers(questions: list[dict], answers: list) -> list[dict]:
    """Check one answer per question; return normalized answers.

    Each normalized answer is {question, header, selected: [labels], other: str | None, text}.
    """
    if not isinstance(answers, list):
        raise AnswerError("answers must be a list with one answer per question")
    if len(answers) != len(questions):
        raise AnswerError(f"expected {len(questions)} answer(s), one per question, got {len(answers)}")
    out = []
    for i, (q, a) in enumerate(zip(questions, answers, strict=True), 1):
        where = f"question {i} ({q['header']})"
        labels = [o["label"] for o in q.get("options") or []]
        selected: list[str] = []
        other: str | None = None
        if isinstance(a, str):
            a = a.strip()
            if not a:
                raise AnswerError(f"{where} has no answer")
            if not labels:
                other = a
            elif a in labels:
                selected = [a]
            elif q.get("multiSelect"):
                parts = [p.strip() for p in a.split(",") if p.strip()]
                unknown = [p for p in parts if p not in labels]
                if unknown:
                    raise AnswerError(f"{where}: {unknown[0]!r} is not one of its options ({', '.join(labels)})")
                selected = parts
            else:
                other = a  # single-select always accepts an Other text
        elif isinstance(a, list) and all(isinstance(x, str) for x in a):
            picked = [x.strip() for x in a if x.strip()]
            if not picked:
                raise AnswerError(f"{where} has no answer")
            if not labels:
                raise AnswerError(f"{where} is a free-text question; send a string")
            unknown = [x for x in picked if x not in labels]
            if unknown:
                raise AnswerError(f"{where}: {unknown[0]!r} is not one of its options ({', '.join(labels)})")
            if not q.get("multiSelect") and len(picked) > 1:
                raise AnswerError(f"{where} takes a single choice")
            selected = list(dict.fromkeys(picked))
        else:
            raise AnswerError(f"{where}: an answer is a string or a list of option labels")
        text = ", ".join(selected) if selected else (other or "")
        out.append({"question": q["question"], "header": q["header"], "selected": selected,
                    "other": other, "text": text})
    return out


def result_text(answers: list[dict]) -> str:
    """The tool_result the model reads: every question with the user's answer."""
    lines = ["The user answered your questions:"]
    for a in answers:
        lines.append(f'- "{a["question"]}" = "{a["text"]}"')
    lines.append("Continue with these answers in mind.")
    return "\n".join(lines)


def dismissed_text() -> str:
    """The tool_result when the user wrote a chat message instead of answering."""
    return ("The user did not answer these questions; they sent a message instead (it follows). "
            "Read it and continue; ask again only if you still need to.")
