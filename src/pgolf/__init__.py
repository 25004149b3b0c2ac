"""pgolf: the pipeline library behind the Parameter Golf record workflow (never shipped in a record)."""

__version__ = "0.1.0"
