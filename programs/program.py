"""The discrete program IR: a listing people read, JSON that round-trips, and validation.

A `Program` is a signature (typed inputs, constants, an output type) and a list of `Step`s, each
an op name and one `Source` per argument. `s0` is a register's initial value and `s<k>` the
register of the argument's type after step k (the machine's keep-previous semantics: a step
that wrote another type left it as it was). The result is the output type's register after the
last step. JSON form:

```json
{"format": "diffvm.program/1",
 "inputs": {"a": "Scalar", "b": "Scalar", "c": "Scalar"},
 "constants": {"one": {"type": "Scalar", "value": 1.0}},
 "output": "Scalar",
 "steps": [{"op": "arith::add", "args": ["a", "b"]}, {"op": "arith::mul", "args": ["s1", "c"]}]}
```

A program that uses a device's ops (`stack::push`, …) carries their signatures (`device_ops`; in
JSON `"devices": {"stack::push": {"inputs": ["Vector[4]"], "output": "Vector[4]"}}`); the hard
interpreter runs them on the devices it is given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diffvm.interp import Op, OpSet, ValueType, get_op, parse_type
from diffvm.interp.device import DeviceOp
from diffvm.interp.machine import STEP_SOURCE, Source

__all__ = ["Program", "Step", "ProgramError", "JSON_FORMAT"]

JSON_FORMAT = "diffvm.program/1"


class ProgramError(ValueError):
    """A program is malformed or does not fit its op set; the message says where."""


@dataclass(frozen=True)
class Step:
    """One instruction: `op` applied to `args`, one source per argument."""

    op: str
    args: tuple[Source, ...]

    def __str__(self) -> str:
        return f"{self.op}({', '.join(map(str, self.args))})"


@dataclass(frozen=True)
class Program:
    """A discrete program (module docstring)."""

    inputs: Mapping[str, ValueType]
    output: ValueType
    steps: tuple[Step, ...]
    constants: Mapping[str, tuple[ValueType, Any]] = field(default_factory=dict)
    device_ops: tuple[DeviceOp, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "inputs", dict(self.inputs))
        object.__setattr__(self, "device_ops", tuple(self.device_ops))
        object.__setattr__(self, "constants", dict(self.constants))
        object.__setattr__(self, "steps", tuple(self.steps))
        self.validate()

    def op(self, name: str) -> Op | DeviceOp:
        """The op a step names: one of the program's device ops, else a registered op."""
        for o in self.device_ops:
            if o.name == name:
                return o
        return get_op(name)

    # --- validation -------------------------------------------------------------------------
    def validate(self, opset: OpSet | None = None) -> None:
        """Raise `ProgramError` naming the step and argument that is wrong.

        Every op must be registered (and in `opset` when one is given), take as many arguments as
        the step gives, and every argument must exist with the type the op expects.
        """
        for i, step in enumerate(self.steps, start=1):
            where = f"step s{i} ({step.op})"
            if opset is not None and step.op not in opset:
                raise ProgramError(f"{where}: op {step.op!r} is not in the op set ({', '.join(opset.names)})")
            try:
                op = self.op(step.op)
            except KeyError as e:
                raise ProgramError(f"{where}: {e.args[0]}") from None
            if len(step.args) != op.arity:
                raise ProgramError(f"{where}: {op.arity} arguments expected, {len(step.args)} given")
            for j, (src, want) in enumerate(zip(step.args, op.inputs)):
                have = self._source_type(src, i, f"{where} argument {j}")
                if have is not None and have != want:
                    raise ProgramError(f"{where} argument {j}: {src} is {have}, the op expects {want}")

    def _source_type(self, src: Source, step: int, where: str) -> ValueType | None:
        """The type of a source, or None for a step reference (it takes the type it is read as)."""
        if src.kind == "input":
            if src.key not in self.inputs:
                raise ProgramError(f"{where}: no input named {src.key!r} (inputs: {list(self.inputs)})")
            return self.inputs[src.key]
        if src.kind == "const":
            if src.key not in self.constants:
                raise ProgramError(f"{where}: no constant named {src.key!r}")
            return self.constants[src.key][0]
        if src.kind == "step":
            if not isinstance(src.key, int) or not 0 <= src.key < step:
                raise ProgramError(f"{where}: s{src.key} is not an earlier step (s0…s{step - 1})")
            return None
        raise ProgramError(f"{where}: unknown source kind {src.kind!r}")

    # --- reading ----------------------------------------------------------------------------
    def result_step(self) -> int:
        """The step whose result the program returns (0: the output register was never written)."""
        for i in range(len(self.steps), 0, -1):
            if self.op(self.steps[i - 1].op).output == self.output:
                return i
        return 0

    def listing(self) -> str:
        """The program as readable text."""
        sig = ", ".join(f"{n}: {t}" for n, t in self.inputs.items())
        lines = [f"program({sig}) -> {self.output}:"]
        for name, (t, value) in self.constants.items():
            lines.append(f"    const {name}: {t} = {value!r}")
        for o in self.device_ops:
            lines.append(f"    device op {o.name}({', '.join(map(str, o.inputs))}) -> {o.output}")
        for i, step in enumerate(self.steps, start=1):
            lines.append(f"    s{i} = {step}")
        lines.append(f"    return s{self.result_step()}")
        return "\n".join(lines)

    __str__ = listing

    # --- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": JSON_FORMAT,
            "inputs": {n: str(t) for n, t in self.inputs.items()},
            "constants": {n: {"type": str(t), "value": v} for n, (t, v) in self.constants.items()},
            "output": str(self.output),
            "steps": [{"op": s.op, "args": [str(a) for a in s.args]} for s in self.steps],
        } | ({"devices": {o.name: {"inputs": [str(t) for t in o.inputs], "output": str(o.output)}
                          for o in self.device_ops}} if self.device_ops else {})

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> Program:
        """Parse `to_json` output; `ProgramError` says what is malformed and where."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProgramError(f"program JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Program:
        if not isinstance(data, dict):
            raise ProgramError(f"program JSON: expected an object, got {type(data).__name__}")
        if data.get("format") != JSON_FORMAT:
            raise ProgramError(f"program JSON: 'format' must be {JSON_FORMAT!r}, got {data.get('format')!r}")
        for key, kind in (("inputs", dict), ("output", str), ("steps", list)):
            if not isinstance(data.get(key), kind):
                raise ProgramError(f"program JSON: {key!r} must be a {kind.__name__}")
        unknown = set(data) - {"format", "inputs", "constants", "output", "steps", "devices"}
        if unknown:
            raise ProgramError(f"program JSON: unknown keys {sorted(unknown)}")

        def typ(text: Any, where: str) -> ValueType:
            try:
                return parse_type(text)
            except ValueError as e:
                raise ProgramError(f"program JSON {where}: {e}") from None

        inputs = {n: typ(t, f"inputs.{n}") for n, t in data["inputs"].items()}
        constants = {}
        consts = data.get("constants", {})
        if not isinstance(consts, dict):
            raise ProgramError("program JSON: 'constants' must be an object")
        for n, c in consts.items():
            if not (isinstance(c, dict) and set(c) == {"type", "value"}):
                raise ProgramError(f"program JSON constants.{n}: expected {{'type': …, 'value': …}}")
            t = typ(c["type"], f"constants.{n}.type")
            value = tuple(c["value"]) if isinstance(c["value"], list) else c["value"]
            try:
                t.from_plain(value)
            except (TypeError, ValueError) as e:
                raise ProgramError(f"program JSON constants.{n}.value: {e}") from None
            constants[n] = (t, value)
        device_ops = []
        devices = data.get("devices", {})
        if not isinstance(devices, dict):
            raise ProgramError("program JSON: 'devices' must be an object")
        for n, d in devices.items():
            where = f"devices.{n}"
            if not (isinstance(d, dict) and set(d) == {"inputs", "output"} and isinstance(d["inputs"], list)):
                raise ProgramError(f"program JSON {where}: expected {{'inputs': [type, …], 'output': type}}")
            if n.count("::") != 1:
                raise ProgramError(f"program JSON {where}: a device op is named '<device>::<op>'")
            inputs_ = tuple(typ(t, f"{where}.inputs[{j}]") for j, t in enumerate(d["inputs"]))
            device_ops.append(DeviceOp(n, inputs_, typ(d["output"], f"{where}.output"), n.split("::")[0]))
        steps = []
        for i, s in enumerate(data["steps"]):
            where = f"steps[{i}]"
            if not (isinstance(s, dict) and isinstance(s.get("op"), str) and isinstance(s.get("args"), list)):
                raise ProgramError(f"program JSON {where}: expected {{'op': str, 'args': [str, …]}}")
            args = []
            for j, a in enumerate(s["args"]):
                if not isinstance(a, str):
                    raise ProgramError(f"program JSON {where}.args[{j}]: expected a string, got {a!r}")
                m = STEP_SOURCE.match(a)
                args.append(
                    Source("step", int(m.group(1))) if m
                    else Source("const", a) if a in constants
                    else Source("input", a)
                )
            steps.append(Step(s["op"], tuple(args)))
        return cls(inputs, typ(data["output"], "output"), tuple(steps), constants, tuple(device_ops))
