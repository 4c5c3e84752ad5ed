"""rulebridge: a governed decision engine — rules over a knowledge graph decide, every step explained."""

from engine.api import Engine, Explanation
from engine.errors import CaseError, Diagnostic, LoadError, RulebridgeError, Span
from engine.model import Case
from engine.pipeline import Decision, Proposal

__all__ = ["Case", "CaseError", "Decision", "Diagnostic", "Engine", "Explanation", "LoadError", "Proposal",
           "RulebridgeError", "Span"]
__version__ = "0.1.0"
