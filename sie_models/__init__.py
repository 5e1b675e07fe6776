"""Networks and objectives for invariant-equivariant self-supervised learning. No file I/O.

`build_method(name, **overrides)` builds a registered method; `list_methods()` names them all and
`method_defaults(name)` gives a method's resolved default options.
"""

from sie_models.methods import (
    ACTION_DIMS,
    Method,
    MethodOutput,
    UnknownMethodError,
    build_method,
    describe_method,
    list_methods,
    method_defaults,
)

__all__ = [
    "ACTION_DIMS",
    "Method",
    "MethodOutput",
    "UnknownMethodError",
    "build_method",
    "describe_method",
    "list_methods",
    "method_defaults",
]
