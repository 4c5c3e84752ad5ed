"""Hit policies: which of the matched rules decides (`priority`, `first`, `unique`, `collect`)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.lang.compiler import CompiledRuleset, Rule


@dataclass
class HitResult:
    """The rules that decide, or a conflict the policy cannot resolve."""

    deciding: list[Rule]
    conflict: list[Rule] | None = None


def apply_hit_policy(rs: CompiledRuleset, matched_ids: list[str]) -> HitResult:
    """Pick the deciding rule(s); a `unique` conflict is an edge case, never a silent pick."""
    by_id = rs.rule_by_id
    matched = sorted((by_id[i] for i in matched_ids), key=lambda r: r.order)
    if not matched:
        return HitResult([])
    policy = rs.hit_policy
    if policy == "first":
        return HitResult([matched[0]])
    if policy == "priority":
        # Highest priority wins; among equals, the rule written first.
        return HitResult([min(matched, key=lambda r: (-r.priority, r.order))])
    if policy == "unique":
        if len(matched) > 1:
            return HitResult([], conflict=matched)
        return HitResult(matched)
    return HitResult(matched)  # collect
