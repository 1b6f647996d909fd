"""The trainer: one loop from a task's sampler to a run directory you can resume, evaluate and inspect.

A run directory holds

    config.json      the task, model and training configurations (what `diffvm train` was given)
    metrics.jsonl    one JSON record per line: {"kind": "train", "update": …} every `log_every`
                     updates, {"kind": "eval", "update": …, "split": …} at every evaluation
    checkpoint.pt    the latest checkpoint: model, optimiser, curriculum, every process's data RNG
    tensorboard/     the same scalars for TensorBoard, when the `tensorboard` package is installed

Resuming (`resume=True`) restores the checkpoint, cuts metrics.jsonl back to the checkpoint's
update and goes on: the records of a resumed run equal those of a run never stopped (the data
comes from a saved generator, evaluations from generators seeded by (seed, update)).

Data-parallel training: started under `torchrun`, every process trains on its own data stream
(seeded by (seed, rank)), DistributedDataParallel averages the gradients (gloo on CPU, NCCL on
GPU), and process 0 alone logs, evaluates and writes checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from diffvm.controllers.checkpoint import CheckpointError, config_differences, load_checkpoint, save_checkpoint
from diffvm.controllers.model import MemoryModel, ModelConfig
from diffvm.tasks.base import Curriculum, SequenceTask, get_task

__all__ = ["Run", "TrainConfig", "evaluate", "load_run", "read_metrics", "run_config", "train"]

CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE = "config.json", "metrics.jsonl", "checkpoint.pt"
# Fields that may change when a run is resumed: how long it runs, and nothing that changes its numbers.
RESUMABLE_CHANGES = {("train", "updates"), ("train", "max_seconds")}


@dataclass
class TrainConfig:
    """How a model is trained; every field is a command-line option."""

    updates: int = 10000  # optimiser updates
    max_seconds: float = 0.0  # stop after this much training time, counted across resumes (0: no limit)
    batch: int = 32  # sequences per update (per process under torchrun)
    optimiser: str = "adam"  # "adam" or "rmsprop" (with momentum, as in the NTM paper)
    lr: float = 1e-3  # learning rate
    momentum: float = 0.9  # RMSProp's momentum
    clip_grad: float = 10.0  # clip the gradients' global norm to this (0: no clipping)
    curriculum: bool = True  # advance the task's difficulty level when training batches are solved
    curriculum_threshold: float = 0.9  # mean exact-match accuracy that advances a level
    curriculum_window: int = 20  # training batches the mean is taken over
    log_every: int = 10  # updates between training records in metrics.jsonl
    eval_every: int = 500  # updates between evaluations of every split (and one at the end)
    eval_batch: int = 100  # sequences per split at an evaluation
    checkpoint_every: int = 100  # updates between checkpoints (and one at the end)
    seed: int = 0  # the seed of parameters, data and evaluation
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"

    def validate(self) -> None:
        """Raise `ValueError` naming the field whose value is out of range."""
        checks = {
            "updates": self.updates >= 1, "max_seconds": self.max_seconds >= 0, "batch": self.batch >= 1,
            "lr": self.lr > 0, "optimiser": self.optimiser in ("adam", "rmsprop"), "momentum": 0 <= self.momentum < 1,
            "clip_grad": self.clip_grad >= 0, "curriculum_threshold": 0 < self.curriculum_threshold <= 1,
            "curriculum_window": self.curriculum_window >= 1, "log_every": self.log_every >= 1,
            "eval_every": self.eval_every >= 1, "eval_batch": self.eval_batch >= 1,
            "checkpoint_every": self.checkpoint_every >= 1, "seed": self.seed >= 0,
            "device": self.device in ("auto", "cpu", "cuda"),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{name} = {getattr(self, name)!r} is out of range")


def run_config(task: str, task_config: Any, model: ModelConfig, train: TrainConfig) -> dict:
    """The JSON-able configuration of a run (what config.json holds)."""
    return {"task": task, "task_config": dataclasses.asdict(task_config),
            "model": dataclasses.asdict(model), "train": dataclasses.asdict(train)}


class Run(NamedTuple):
    """A run directory loaded for evaluation or inspection."""

    config: dict
    task: SequenceTask
    model: MemoryModel
    update: int  # the checkpoint's update


def _read_config(run_dir: Path) -> dict:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a run directory: no {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or set(config) != {"task", "task_config", "model", "train"}:
        raise ValueError(f"{path} is not a diffvm run configuration")
    return config


def _build(config: dict) -> tuple[SequenceTask, ModelConfig, TrainConfig]:
    """The task and configurations a config.json describes; errors name the bad field."""
    task_cls = get_task(config["task"])
    parts = []
    for key, cls in [("task_config", task_cls.Config), ("model", ModelConfig), ("train", TrainConfig)]:
        try:
            parts.append(cls(**config[key]))
        except TypeError as e:
            raise ValueError(f"configuration {key!r} does not fit {cls.__name__}: {e}") from e
    task_cfg, model_cfg, train_cfg = parts
    model_cfg.validate()
    train_cfg.validate()
    return task_cls(task_cfg), model_cfg, train_cfg


def load_run(run_dir: Path | str) -> Run:
    """Load a run's configuration and latest checkpoint (`diffvm eval` and `inspect`)."""
    run_dir = Path(run_dir)
    config = _read_config(run_dir)
    task, model_cfg, _ = _build(config)
    payload = load_checkpoint(run_dir / CHECKPOINT_FILE, config=_comparable(config))
    model = MemoryModel(model_cfg, task.input_size, task.output_size)
    _load_model(model, payload, run_dir / CHECKPOINT_FILE)
    model.eval()
    return Run(config, task, model, payload["update"])


def _comparable(config: dict) -> dict:
    """The configuration without the fields a resumed run may change."""
    out = json.loads(json.dumps(config))
    for section, field in RESUMABLE_CHANGES:
        out[section].pop(field, None)
    return out


def _load_model(model: torch.nn.Module, payload: dict, path: Path) -> None:
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {str(e).splitlines()[0]}") from e


# --- evaluation ---------------------------------------------------------------------------------
def evaluate(model: MemoryModel, task: SequenceTask, *, batch: int, seed: int, update: int,
             splits: tuple[str, ...] | None = None, device=None) -> dict[str, dict[str, dict[str, float]]]:
    """Every split's metrics, soft and discretised ("hard": hardened devices, one-hot
    instructions, halting at the first unit above ½); the data is seeded by (seed, update)."""
    results = {}
    for i, split in enumerate(splits or task.splits):
        task.check_split(split)
        rng = np.random.default_rng([seed, update, i, 1])  # never the training stream
        data = task.sample_split(rng, batch, split).to(device)
        gen = torch.Generator(device=data.inputs.device).manual_seed(seed * 1_000_003 + update)
        with torch.no_grad():
            soft = model(data.inputs, mode="eval", generator=gen)
            hard = model(data.inputs, mode="hard")
        results[split] = {
            "soft": {**task.metrics(soft.logits, data), "ponder": soft.steps.mean().item()},
            "hard": {**task.metrics(hard.logits, data), "ponder": hard.steps.mean().item()},
        }
    return results


# --- training -----------------------------------------------------------------------------------
class _Log:
    """metrics.jsonl (and TensorBoard when installed), written by process 0 only."""

    def __init__(self, run_dir: Path, keep_until: int | None):
        self.path = run_dir / METRICS_FILE
        if keep_until is not None:  # resuming: drop what was logged after the checkpoint
            kept = [line for line in _read_lines(self.path) if json.loads(line)["update"] <= keep_until]
            _write_atomic(self.path, "".join(line + "\n" for line in kept))
        self.file = open(self.path, "a")
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional: the JSONL file holds everything
            pass
        else:
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            prefix = record["kind"] if record["kind"] == "train" else f"{record['kind']}/{record['split']}"
            for key, value in _flatten(record).items():
                if isinstance(value, (int, float)) and key not in ("update", "seconds"):
                    self.tensorboard.add_scalar(f"{prefix}/{key}", value, record["update"])

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of `run_dir`'s metrics.jsonl, in order, up to a last line cut short by a kill."""
    return [json.loads(line) for line in _read_lines(Path(run_dir) / METRICS_FILE)]


def _logged_evaluation(run_dir: Path, update: int) -> dict:
    """The evaluation metrics.jsonl holds for `update`: {split: {"soft": …, "hard": …}}, or {}."""
    records = read_metrics(run_dir)
    return {r["split"]: {k: v for k, v in r.items() if k not in ("kind", "update", "split")}
            for r in records if r["kind"] == "eval" and r["update"] == update}


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: everything after it is lost too
            break
        lines.append(line)
    return lines


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _mean_across(values: dict[str, float], world: int) -> dict[str, float]:
    """The mean over processes of each number (every process gets the same figures)."""
    if world == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / world).tolist()))


def _any_across(flag: bool, world: int) -> bool:
    """Whether `flag` holds in any process (every process gets the same answer)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _prepare(run_dir: Path, config: dict, resume: bool) -> dict | None:
    """Check the run directory before anything is written; the checkpoint to resume from, if any."""
    checkpoint = run_dir / CHECKPOINT_FILE
    if not resume:
        if (run_dir / CONFIG_FILE).exists() or checkpoint.exists():
            raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it, "
                             "or choose another --run-dir")
        return None
    if not (run_dir / CONFIG_FILE).exists():
        raise ValueError(f"nothing to resume: {run_dir} holds no run ({CONFIG_FILE} is missing)")
    saved = _read_config(run_dir)
    if _comparable(saved) != _comparable(config):
        raise ValueError(f"{run_dir} was started with another configuration: "
                         f"{', '.join(config_differences(_comparable(saved), _comparable(config)))}")
    if not checkpoint.exists():
        return None  # killed before its first checkpoint: start again
    return load_checkpoint(checkpoint, config=_comparable(config))


def train(config: dict, run_dir: Path | str, *, resume: bool = False, quiet: bool = False) -> dict:
    """Train a model as `config` (see `run_config`) says, in `run_dir`; returns a summary.

    Errors in the configuration, the run directory or the checkpoint are raised (`ValueError`,
    `CheckpointError`) before anything is written.
    """
    run_dir = Path(run_dir)
    task, model_cfg, cfg = _build(config)
    for split in task.splits:  # a memory too small for an evaluation split fails now, not after training
        model_cfg.check_length(task.sample_split(np.random.default_rng(0), 1, split).inputs.shape[1])
    rank, world = _distributed()
    payload = _prepare(run_dir, config, resume)
    if payload is not None and len(payload["data_rng"]) != world:
        raise CheckpointError(f"checkpoint in {run_dir} was written by {len(payload['data_rng'])} processes; "
                              f"this run has {world}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainConfig.device = 'cuda' but CUDA is not available")
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)

    with torch.random.fork_rng(devices=[]):  # parameters from the seed alone, the same in every process
        torch.manual_seed(cfg.seed)
        model = MemoryModel(model_cfg, task.input_size, task.output_size).to(device)
    optimiser = (torch.optim.Adam(model.parameters(), lr=cfg.lr) if cfg.optimiser == "adam" else
                 torch.optim.RMSprop(model.parameters(), lr=cfg.lr, momentum=cfg.momentum))
    # without a curriculum every batch comes from the last level, the full training distribution
    curriculum = Curriculum(task.levels, threshold=cfg.curriculum_threshold, window=cfg.curriculum_window,
                            start=0 if cfg.curriculum else task.levels - 1)
    data_rng = np.random.default_rng([cfg.seed, rank])
    start, elapsed = 0, 0.0
    if payload is not None:
        _load_model(model, payload, run_dir / CHECKPOINT_FILE)
        optimiser.load_state_dict(payload["optimiser"])
        curriculum.load_state_dict(payload["curriculum"])
        data_rng.bit_generator.state = payload["data_rng"][rank]
        torch.set_rng_state(payload["torch_rng"])
        start, elapsed = payload["update"], payload.get("seconds", 0.0)
    if start > cfg.updates:
        raise ValueError(f"the checkpoint in {run_dir} is at update {start}, past TrainConfig.updates = "
                         f"{cfg.updates}: resume with --updates {start} or more")

    log = None
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(run_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        log = _Log(run_dir, keep_until=start if resume else None)
    trained = model if world == 1 else torch.nn.parallel.DistributedDataParallel(model)

    def checkpoint(update: int, seconds: float) -> None:
        states = [data_rng.bit_generator.state]
        if world > 1:
            states = [None] * world
            dist.all_gather_object(states, data_rng.bit_generator.state)
        if rank == 0:
            save_checkpoint(run_dir / CHECKPOINT_FILE, {
                "config": _comparable(config), "update": update, "seconds": seconds,
                "model": model.state_dict(), "optimiser": optimiser.state_dict(),
                "curriculum": curriculum.state_dict(), "data_rng": states, "torch_rng": torch.get_rng_state()})

    def evaluation(update: int) -> dict:
        results = {}
        if rank == 0:
            model.eval()
            results = evaluate(model, task, batch=cfg.eval_batch, seed=cfg.seed, update=update, device=device)
            model.train()
            for split, figures in results.items():
                log.write({"kind": "eval", "update": update, "split": split, **figures})
        if world > 1:
            dist.barrier()
        return results

    began = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.updates, initial=start, disable=quiet or rank != 0, unit="upd", file=sys.stderr,
               desc=task.name + (f" (stops at {cfg.max_seconds:g} s)" if cfg.max_seconds else ""))
    # resumed at its last update or out of time (a run stopped early and closed at its checkpoint):
    # nothing to train, and the summary gives the evaluation logged there, or one made now
    out_of_time = lambda: bool(cfg.max_seconds) and _any_across(  # noqa: E731
        time.perf_counter() - began >= cfg.max_seconds, world)
    finished = start == cfg.updates or (start > 0 and out_of_time())
    results: dict = _logged_evaluation(run_dir, start) if finished else {}
    if finished and not results:
        results = evaluation(start)
    reached = start
    try:
        for update in range(start + 1, cfg.updates + 1) if not finished else ():
            level = curriculum.level
            batch = task.sample(data_rng, cfg.batch, level).to(device)
            out = trained(batch.inputs)
            loss, parts = model.loss(task, batch, out)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad if cfg.clip_grad else math.inf)
            optimiser.step()
            figures = _mean_across({"loss": loss.item(), **parts, **task.metrics(out.logits.detach(), batch),
                                    "grad_norm": grad_norm.item()}, world)
            curriculum.observe(figures["exact"])
            bar.update(1)
            if update % cfg.log_every == 0 and rank == 0:
                seconds = time.perf_counter() - began
                log.write({"kind": "train", "update": update, "level": level, **figures, "seconds": round(seconds, 3)})
                bar.set_postfix(loss=f"{figures['loss']:.3g}", level=level, refresh=False)
            reached = update
            last = update == cfg.updates or out_of_time()
            if update % cfg.eval_every == 0 or last:
                results = evaluation(update)
            if update % cfg.checkpoint_every == 0 or last:
                checkpoint(update, time.perf_counter() - began)
            if last:
                break
    finally:
        bar.close()
        if log is not None:
            log.close()
        if world > 1:  # every process leaves together: no gloo abort at shutdown
            dist.barrier()
            dist.destroy_process_group()
    return {"run_dir": str(run_dir), "task": task.name, "updates": reached, "time_limited": reached < cfg.updates,
            "processes": world, "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - began, 1),
            "level": curriculum.level, "eval": results}
