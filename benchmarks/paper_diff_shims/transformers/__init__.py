"""prompt_utils.py imports transformers.Conversation and never uses it."""


class Conversation:
    pass
