"""musictok: discrete music tokenization and token language models."""

__version__ = "0.1.0"
