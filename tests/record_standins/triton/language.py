"""triton.language for import only: every attribute (tl.constexpr, tl.float32, ...) is a placeholder."""


class _Placeholder:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"triton.language.{self.name} (stand-in)"


def __getattr__(name):
    return _Placeholder(name)
