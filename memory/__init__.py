"""diffvm.memory: memory devices (NTM, DNC, neural stacks, …). Empty until the devices land."""

__all__: list[str] = []
