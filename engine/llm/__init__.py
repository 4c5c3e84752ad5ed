"""The LLM fallback: prompts, the model call, structured output, bounded repair.

litellm is imported only inside `LiteLLMModel.complete`, so the CLI and the rule path
never pay its import time.
"""
