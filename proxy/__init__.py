"""perfics: the OpenAI-compatible service."""
