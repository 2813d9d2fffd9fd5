"""The one place where LLM and embedding calls are made."""
