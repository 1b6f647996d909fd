"""The op registry: one registration point for primitive operations, and instruction sets.

```python
@primitive("arith::add", inputs=(Scalar, Scalar), output=Scalar)
def add(a, b):
    return a + b
```

An op has a *soft* meaning (the decorated function: batched, differentiable) and a *hard* one
(`hard=`, the discrete meaning; by default the soft function, hardened by the output type). Both
take batched tensors, (B, *shape) per input. Names are namespaced `ns::name` and unique.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from diffvm.interp.device import DeviceOp
from diffvm.interp.types import ValueType

__all__ = ["Op", "OpSet", "OpDefinitionError", "primitive", "get_op", "registered_ops"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]*::[a-z_][a-z0-9_]*$")
_REGISTRY: dict[str, Op] = {}


class OpDefinitionError(TypeError):
    """An op's definition is malformed: its name, its types or its arity."""


@dataclass(frozen=True, eq=False)
class Op:
    """A registered primitive. Call it like its soft function; `hard` runs the discrete meaning.

    Attributes:
        name: `ns::name`.
        inputs: the input types, one per argument.
        output: the output type.
        soft: the differentiable meaning, (B, *in_shape)... -> (B, *out_shape).
        hard_fn: the discrete meaning if it differs from the soft one, else None.
    """

    name: str
    inputs: tuple[ValueType, ...]
    output: ValueType
    soft: Callable[..., torch.Tensor]
    hard_fn: Callable[..., torch.Tensor] | None = None

    @property
    def arity(self) -> int:
        return len(self.inputs)

    @property
    def exact(self) -> bool:
        """True when the soft meaning is also the hard one (no smooth surrogate)."""
        return self.hard_fn is None

    def __repr__(self) -> str:
        args = ", ".join(map(str, self.inputs))
        return f"<op {self.name}({args}) -> {self.output}>"

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        """The soft meaning, with the machine boundary's checks on arguments and result."""
        if len(args) != self.arity:
            raise TypeError(f"op {self.name!r} takes {self.arity} arguments, got {len(args)}")
        for i, (t, a) in enumerate(zip(self.inputs, args)):
            t.check(a, what=f"op {self.name!r} argument {i}")
        out = self.soft(*args)
        self.check_result(out, batch=args[0].shape[0] if args else None)
        return out

    def hard_batch(self, *args: torch.Tensor) -> torch.Tensor:
        """The hard meaning on hard-valued batched tensors, returned in hard form."""
        out = (self.hard_fn or self.soft)(*args)
        self.check_result(out, batch=args[0].shape[0] if args else None)
        return self.output.harden(out)

    def hard(self, *plain: Any) -> Any:
        """The hard meaning on one example's plain Python values (used by the hard interpreter)."""
        if len(plain) != self.arity:
            raise TypeError(f"op {self.name!r} takes {self.arity} arguments, got {len(plain)}")
        args = [t.from_plain(p).unsqueeze(0) for t, p in zip(self.inputs, plain)]  # (1, *shape)
        with torch.no_grad():
            return self.output.to_plain(self.hard_batch(*args)[0])

    def check_result(self, out: Any, *, batch: int | None) -> None:
        """Raise `TypeError` if a result does not have the declared output type and batch."""
        self.output.check(out, what=f"op {self.name!r} result")
        if batch is not None and out.shape[0] != batch:
            raise TypeError(f"op {self.name!r} result has batch {out.shape[0]}, its inputs {batch}")


def _positional_arity(fn: Callable, what: str) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError) as e:  # builtins without a signature
        raise OpDefinitionError(f"{what}: cannot read its signature ({e})") from None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        raise OpDefinitionError(f"{what}: takes *args; an op's arity must be fixed")
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def _check_type(t: Any, what: str) -> None:
    if isinstance(t, ValueType):
        return
    if isinstance(t, type) and issubclass(t, ValueType) and "size" in getattr(t, "__dataclass_fields__", {}):
        raise OpDefinitionError(f"{what}: {t.__name__} needs a size, e.g. {t.__name__}[8]")
    raise OpDefinitionError(f"{what}: expected a value type such as Scalar, got {t!r}")


def primitive(
    name: str,
    *,
    inputs: Sequence[ValueType],
    output: ValueType,
    hard: Callable[..., torch.Tensor] | None = None,
) -> Callable[[Callable[..., torch.Tensor]], Op]:
    """Register the decorated soft function as op `name`; returns the `Op`.

    Args:
        name: namespaced `ns::name` (lower case, digits, underscores), unique in the registry.
        inputs: one value type per positional argument of the function.
        output: the result's value type.
        hard: the discrete meaning, when the soft function is a smooth surrogate of it. It takes
            and returns batched tensors like the soft one; its result is hardened by `output`.
    Raises:
        OpDefinitionError: bad name, duplicate name, no inputs, a non-type, or an arity that does not
            match.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise OpDefinitionError(f"op name {name!r} must look like 'namespace::name' (lower case)")
    if name in _REGISTRY:
        raise OpDefinitionError(f"op {name!r} is already registered ({_REGISTRY[name]!r})")
    if isinstance(inputs, ValueType) or not isinstance(inputs, (tuple, list)):
        raise OpDefinitionError(f"op {name!r}: inputs must be a tuple of types, got {inputs!r}")
    if not inputs:
        # a pure op without inputs has no batch to follow: it is a constant of the machine
        raise OpDefinitionError(f"op {name!r} takes no inputs; give the value as a machine constant "
                                "(Machine(constants=...)) instead")
    for i, t in enumerate(inputs):
        _check_type(t, f"op {name!r} input {i}")
    _check_type(output, f"op {name!r} output")
    inputs = tuple(inputs)

    def register(fn: Callable[..., torch.Tensor]) -> Op:
        for f, role in ((fn, "soft function"), (hard, "hard function")):
            if f is None:
                continue
            if not callable(f):
                raise OpDefinitionError(f"op {name!r}: {role} {f!r} is not callable")
            n = _positional_arity(f, f"op {name!r} {role}")
            if n != len(inputs):
                raise OpDefinitionError(
                    f"op {name!r}: {role} takes {n} positional arguments but {len(inputs)} "
                    f"input types were declared"
                )
        if name in _REGISTRY:  # registered between the decorator call and its application
            raise OpDefinitionError(f"op {name!r} is already registered")
        op = Op(name, inputs, output, fn, hard)
        _REGISTRY[name] = op
        return op

    return register


def get_op(name: str) -> Op:
    """The registered op `name`; `KeyError` listing close names when there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        ns = name.split("::")[0] if isinstance(name, str) else ""
        near = [n for n in _REGISTRY if n.startswith(ns + "::")] or sorted(_REGISTRY)[:10]
        raise KeyError(f"no op named {name!r} is registered; registered: {', '.join(near)}") from None


def registered_ops() -> tuple[Op, ...]:
    """Every registered op, in registration order."""
    return tuple(_REGISTRY.values())


class OpSet:
    """An ordered selection of ops: the instruction set a controller is built for.

    Operand *slots* are shared between ops: slot (τ, j) holds the j-th argument of type τ of
    whichever op runs, so `add(a, b)` and `mul(a, b)` read the same two Scalar slots.
    """

    def __init__(self, ops: Iterable[Op | DeviceOp | str]):
        self.ops: tuple[Op | DeviceOp, ...] = tuple(get_op(o) if isinstance(o, str) else o for o in ops)
        if not self.ops:
            raise ValueError("an OpSet needs at least one op")
        for o in self.ops:
            if not isinstance(o, (Op, DeviceOp)):
                raise TypeError(f"OpSet entries must be ops, device ops or op names, got {o!r}")
        names = [o.name for o in self.ops]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"OpSet names op(s) twice: {', '.join(sorted(dup))}")
        self._index = {n: i for i, n in enumerate(names)}

        slots: list[tuple[ValueType, int]] = []
        op_slots = []
        for o in self.ops:
            seen: dict[ValueType, int] = {}
            mine = []
            for t in o.inputs:
                key = (t, seen.get(t, 0))
                seen[t] = key[1] + 1
                if key not in slots:
                    slots.append(key)
                mine.append(slots.index(key))
            op_slots.append(tuple(mine))
        self.slots: tuple[tuple[ValueType, int], ...] = tuple(slots)
        self.op_slots: tuple[tuple[int, ...], ...] = tuple(op_slots)
        self.output_types: tuple[ValueType, ...] = tuple(dict.fromkeys(o.output for o in self.ops))

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[Op | DeviceOp]:
        return iter(self.ops)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __repr__(self) -> str:
        return f"OpSet([{', '.join(repr(o.name) for o in self.ops)}])"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.ops)

    def index(self, name: str) -> int:
        """Position of op `name`; `KeyError` naming the set's ops when it is not in it."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"op {name!r} is not in this OpSet ({', '.join(self.names)})") from None

    @property
    def types(self) -> tuple[ValueType, ...]:
        """Every type an op of the set reads or writes."""
        return tuple(dict.fromkeys([*(t for t, _ in self.slots), *self.output_types]))
