"""A proposal: an action with parameters, proposed by a rule, the LLM, a person or an agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCES = ("rule", "llm", "human", "agent")


@dataclass
class Proposal:
    """Not yet verified. `params` are JSON-native values (IRIs as text)."""

    action: str
    params: dict[str, Any]
    source: str = "rule"
    rule: str | None = None
    rationale: str = ""
    confidence: float | None = None
    facts_relied_on: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.action, "params": self.params, "source": self.source,
                             "rule": self.rule}
        if self.source == "llm":
            d.update(rationale=self.rationale, confidence=self.confidence, facts_relied_on=self.facts_relied_on)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Proposal:
        return cls(d["action"], dict(d.get("params") or {}), d.get("source", "rule"), d.get("rule"),
                   d.get("rationale", ""), d.get("confidence"), list(d.get("facts_relied_on") or []))
