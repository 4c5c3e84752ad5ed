"""Write the LLM answers `rulebridge demo` replays when no model is configured.

There is no live model on the machine that builds this repository, so the answers in
`demo_responses.jsonl` are written by `demo_author` below: a small, deterministic stand-in
that reads each prompt the way a careful model would (tier limits, margin, credit) and
answers in the required JSON. Some of its answers are deliberately imperfect — a malformed
first answer, a discount that breaks the margin guard, a low-confidence proposal — so the
demo shows schema repair, guard repair, review and denial. The demo says plainly that it
replays this file. To record a real model's answers instead:

    RULEBRIDGE_LLM_MODEL=openai/gpt-4o-mini RULEBRIDGE_LLM_MODE=record \\
    RULEBRIDGE_LLM_RESPONSES=examples/llm/demo_responses.jsonl rulebridge demo

Run from the repository root:  python examples/llm/make_demo_responses.py
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "examples" / "llm" / "demo_responses.jsonl"
TIER_LIMIT = {"bronze": 5, "silver": 10, "gold": 15, "platinum": 20}
_BLOCK = re.compile(r"## ([A-Z ]+)[^\n]*\n```json\n(.*?)\n```", re.S)


def _blocks(text: str) -> dict[str, object]:
    return {title.strip(): json.loads(body) for title, body in _BLOCK.findall(text)}


def _triple(prov: list[dict], prop: str) -> object:
    for t in prov:
        if t["p"].endswith("#" + prop):
            return t["o"]
    return None


def demo_author(messages: list[dict[str, str]]) -> str:
    """A deterministic stand-in for a model: the answer to the last message of the conversation."""
    b = _blocks(messages[1]["content"])
    case, facts, prov = b["CASE"], b["FACTS"], b["PROVENANCE"]
    ruleset = b["POLICY"]["ruleset"]
    payload = case["payload"]
    last = messages[-1]["content"]
    digest = int(hashlib.sha256(messages[1]["content"].encode()).hexdigest(), 16)
    if len(messages) == 2 and digest % 9 == 0:  # now and then a first answer that is not JSON
        return "Sure! I think this discount looks fine, approve it."
    if ruleset == "crm.discount_approval":
        tier = str(facts.get("case.order.customer.tier") or "")
        limit = TIER_LIMIT.get(tier, 5)
        asked = float(payload.get("percent") or 0)
        margin = _triple(prov, "margin_percent")
        if "denied by the verification gate" in last:  # guard repair: come down to what the margin allows
            room = float(margin) - 5.5 if margin is not None else 0
            if room < 1:
                return json.dumps({"decision": "escalate", "reason": "no discount fits the margin floor"})
            return json.dumps({"decision": "propose", "action": "approve_discount",
                               "params": {"order": payload["order"], "percent": round(min(asked, room), 1),
                                          "note": "reduced to respect the 5-point margin floor"},
                               "rationale": f"the margin of {margin}% leaves room for {room:.1f}%",
                               "confidence": 0.85, "facts_relied_on": ["case.order.margin_percent"]})
        if facts.get("over_credit"):
            return json.dumps({"decision": "escalate", "reason": "the customer is over its credit limit"})
        if asked <= limit + 3:
            return json.dumps({"decision": "propose", "action": "approve_discount",
                               "params": {"order": payload["order"], "percent": asked,
                                          "note": f"{tier} tier, slightly above the {limit}% table limit"},
                               "rationale": f"{asked}% is within 3 points of the {tier} limit of {limit}%",
                               "confidence": 0.9, "facts_relied_on": ["case.order.customer.tier", "case.percent"]})
        if asked <= limit + 8:
            return json.dumps({"decision": "propose", "action": "approve_discount",
                               "params": {"order": payload["order"], "percent": asked},
                               "rationale": f"{asked}% is well above the {tier} limit of {limit}%; plausible for "
                                            "a large order but uncertain",
                               "confidence": 0.55, "facts_relied_on": ["case.order.customer.tier"]})
        return json.dumps({"decision": "escalate", "reason": f"{asked}% is far above the {tier} limit of {limit}%"})
    if ruleset.startswith("accounts_payable"):
        inv = payload.get("invoice")
        action = "hold_payment" if ruleset.endswith("payment_release") else "hold_invoice"
        return json.dumps({"decision": "propose", "action": action,
                           "params": {"invoice": inv, "reason": "no standard rule applies; held for AP review"},
                           "rationale": "holding is the safe action when the rules do not decide",
                           "confidence": 0.9, "facts_relied_on": []})
    return json.dumps({"decision": "escalate", "reason": "the policy does not cover this case"})


def main() -> int:
    import os

    os.environ["RULEBRIDGE_STATE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/state.db"
    from engine.api import Engine
    from engine.demo import sample_cases
    from engine.llm.clients import RecordingModel, ResponseFile, ScriptedModel
    from engine.llm.config import LLMConfig

    if OUT.exists():
        OUT.unlink()
    model = RecordingModel(ScriptedModel(demo_author, name="demo-author"), ResponseFile(OUT))
    engine = Engine.open(ROOT, model=model, llm=LLMConfig(model="demo-author", backoff_s=0))
    cases = sample_cases(engine.ws, 240)
    outcomes: dict[str, int] = {}
    for c in cases:
        d = engine.decide(c)
        if d.llm is not None:
            key = f"{d.outcome}/{d.reason}"
            outcomes[key] = outcomes.get(key, 0) + 1
    print(f"wrote {OUT.relative_to(ROOT)}: {sum(1 for _ in OUT.open())} answers; outcomes {outcomes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
