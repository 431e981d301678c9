"""Replicated schedules (Chimera, zero-bubble Chimera, GEMS, DualPipe) on
torch.distributed: every rank walks its list of the library's lowered
schedule; activations and gradients move by point-to-point in the lowered
groups, each stage's replicas are all-reduced at the REDUCE_GRAD points.
"""
from __future__ import annotations

import copy
import itertools
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.pipelining._backward import stage_backward_input, stage_backward_weight
from torch.distributed.pipelining.microbatch import split_args_kwargs_into_chunks

from ._compat import require_torch
from ._plan import COMPUTE_KINDS, check_single_group, is_lowered, lowered, replicas_of, stage_ranks


class PipelineScheduleReplicated:
    """Any schedule of the library, replicated or not, run on torch.distributed.

    ``stages``: the whole model cut into ``schedule.stages`` modules (the
    same list on every rank; each rank deep-copies the stages it holds, and
    rank-to-rank broadcasts make the replicas of a stage identical).
    ``schedule``: a ``chimera.Schedule``, compute only (lowered here with
    ``sync``: "eager" all-reduces a stage as soon as its replicas' last
    backward is done, overlapping the rest; "end"; "eager-opt") or lowered.
    ``loss_fn(output, target)`` per micro-batch; with ``scale_grads`` the
    gradients are divided by the micro-batch count (mean loss). One process
    per worker in ``group`` (default: the world). Call ``step(inputs,
    target=...)`` on every rank with the whole batch, then step an optimizer
    over ``parameters()``.
    """

    def __init__(self, stages: Sequence[nn.Module], schedule, loss_fn: Callable[[Any, Any], torch.Tensor], *,
                 sync: str = "eager", group: dist.ProcessGroup | None = None, scale_grads: bool = True,
                 args_chunk_spec=None, kwargs_chunk_spec=None) -> None:
        require_torch()
        if not dist.is_initialized():
            raise RuntimeError("chimera.torch: call torch.distributed.init_process_group before building a schedule")
        if loss_fn is None:
            raise ValueError("loss_fn is required: the schedule runs forward and backward passes")
        self._group = group if group is not None else dist.group.WORLD
        self.rank = dist.get_rank(self._group)
        _check_model(stages, schedule, dist.get_world_size(self._group))
        self.schedule = schedule if is_lowered(schedule) else lowered(schedule, sync)
        self._ops = list(self.schedule.ops(self.rank))
        self._loss_fn, self._scale_grads = loss_fn, scale_grads
        self._chunk_specs = (args_chunk_spec, kwargs_chunk_spec)
        self._n, self._last = schedule.micro_batches, schedule.stages - 1
        self._model = list(stages)  # the full model, for the shapes of the messages
        self._shapes: dict[tuple, list[tuple[torch.Size, torch.dtype]]] = {}
        self._holder = {(p, s): schedule.worker_of(p, s)
                        for p in range(schedule.pipelines) for s in range(schedule.stages)}
        self.replicas: dict[tuple[int, int], nn.Module] = {
            key: copy.deepcopy(self._model[key[1]]) for key in replicas_of(schedule, self.rank)}
        params = [q for module in self.replicas.values() for q in module.parameters()]
        self._device = params[0].device if params else torch.device("cpu")  # where messages are received
        self._reduce_groups = self._make_reduce_groups(stage_ranks(schedule))
        self._broadcast_replicas(stage_ranks(schedule))

    # -- set-up -------------------------------------------------------------

    def _global(self, worker: int) -> int:
        return worker if self._group is dist.group.WORLD else dist.get_global_rank(self._group, worker)

    def _make_reduce_groups(self, ranks: dict[int, tuple[int, ...]]) -> dict[int, dist.ProcessGroup]:
        """One process group per distinct replica set (every rank creates
        every group, in the same order, as new_group requires)."""
        made = {}
        for members in sorted(set(ranks.values())):
            if len(members) > 1:
                made[members] = dist.new_group([self._global(w) for w in members])
        return {s: made[m] for s, m in ranks.items() if len(m) > 1 and self.rank in m}

    def _broadcast_replicas(self, ranks: dict[int, tuple[int, ...]]) -> None:
        """Replicas of a stage start as the copy of its lowest holder."""
        for (p, s), module in sorted(self.replicas.items(), key=lambda item: (item[0][1], item[0][0])):
            if s not in self._reduce_groups:
                continue
            for tensor in itertools.chain(module.parameters(), module.buffers()):
                dist.broadcast(tensor.data, src=self._global(ranks[s][0]), group=self._reduce_groups[s])

    def parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter of this rank's replicas (give these to the optimizer)."""
        for key in sorted(self.replicas):
            yield from self.replicas[key].parameters()

    # -- one iteration ------------------------------------------------------

    def step(self, *args: Any, target: Any = None, losses: list | None = None, **kwargs: Any) -> None:
        """One training iteration over the whole batch (``args``/``kwargs`` are
        split into micro-batches along dim 0, as torch's schedules do). With
        ``losses``, appends one loss per micro-batch: a tensor where this rank
        ran the micro-batch's last stage, else None. Gradients are zeroed first
        and hold the all-reduced mean when step returns."""
        if target is None:
            raise ValueError("step needs target= (the loss runs on the last stage of every pipeline)")
        arg_mbs, kwarg_mbs = split_args_kwargs_into_chunks(args, kwargs, self._n, *self._chunk_specs)
        target_mbs = [chunk[0] for chunk in split_args_kwargs_into_chunks((target,), None, self._n)[0]]
        self._mbs, self._targets = list(zip(arg_mbs, kwarg_mbs)), target_mbs
        self._stash, self._inbox_f, self._inbox_b, self._outbox = {}, {}, {}, {}
        self._pending, self._losses = [], {}
        for module in self.replicas.values():
            module.zero_grad(set_to_none=True)
        self._run_ops()
        self._finish_reductions()
        leftover = [name for name, box in (("stash", self._stash), ("inbox_f", self._inbox_f),
                                           ("inbox_b", self._inbox_b), ("outbox", self._outbox)) if box]
        if leftover:
            raise RuntimeError(f"chimera.torch: rank {self.rank} ended the step with unconsumed {leftover}")
        if losses is not None:
            losses.extend(self._losses.get(m) for m in range(self._n))

    def _run_ops(self) -> None:
        ops, i = self._ops, 0
        while i < len(ops):
            kind = str(ops[i].kind)
            if kind in COMPUTE_KINDS:
                self._compute(kind, ops[i])
                i += 1
                continue
            end = i
            while end < len(ops) and str(ops[end].kind) not in COMPUTE_KINDS:
                end += 1
            self._comm_group(ops[i:end])
            i = end

    def _compute(self, kind: str, op) -> None:
        key = (op.pipeline, op.stage, op.micro_batch)
        if kind == "F":
            self._forward(key)
        elif kind == "W":
            self._backward_weight(key)
        else:
            self._backward(key, full=(kind == "B"))

    def _forward(self, key: tuple[int, int, int]) -> None:
        p, s, m = key
        module = self.replicas[(p, s)]
        x = None
        if s == 0:
            args, kwargs = self._mbs[m]
            out = module(*args, **kwargs)
        else:
            x = self._inbox_f.pop(key)
            x.requires_grad_(x.is_floating_point())
            out = module(x)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"stage {s} returned {type(out).__name__}; chimera.torch moves one tensor between "
                            "stages")
        loss = None
        if s == self._last:
            loss = self._loss_fn(out, self._targets[m])
            self._losses[m] = loss.detach()
        self._stash[key] = [x, out, loss, None]
        if s < self._last:
            if self._holder[(p, s + 1)] == self.rank:
                self._inbox_f[(p, s + 1, m)] = out.detach()  # a V turn or a local hand-off: no message
            else:
                self._outbox[("F",) + key] = out.detach()

    def _backward(self, key: tuple[int, int, int], full: bool) -> None:
        """B (full backward) or I (input gradient only; W follows). I splits
        the stage's graph as torch's zero-bubble stages do: the input
        gradient now, the weight gradients later from the saved intermediates
        (the first stage has no input gradient: its W is the whole backward)."""
        x, out, loss, _ = self._stash[key]
        root, grad = (loss, None) if key[1] == self._last else (out, self._inbox_b.pop(key))
        if full:
            torch.autograd.backward(root, grad)
            del self._stash[key]
            self._pass_input_grad(key, None if x is None else x.grad)
            return
        if x is None:
            self._stash[key][3] = ("whole", root, grad)
            return
        params = [q for q in self.replicas[key[:2]].parameters() if q.requires_grad]
        (dx,), groups = stage_backward_input([root], None if grad is None else [grad], [x], iter(params))
        self._pass_input_grad(key, torch.zeros_like(x) if dx is None else dx)
        self._stash[key][3] = ("groups", groups, None)

    def _backward_weight(self, key: tuple[int, int, int]) -> None:
        how, saved, grad = self._stash.pop(key)[3]
        params = [q for q in self.replicas[key[:2]].parameters() if q.requires_grad]
        if how == "groups":
            stage_backward_weight(iter(params), saved)
        elif params:
            torch.autograd.backward(saved, grad, inputs=params)

    def _pass_input_grad(self, key: tuple[int, int, int], dx: torch.Tensor | None) -> None:
        p, s, m = key
        if s == 0:
            return
        if dx is None:
            raise RuntimeError(f"stage {s} input got no gradient (micro-batch {m}); its output must depend on it")
        if self._holder[(p, s - 1)] == self.rank:
            self._inbox_b[(p, s - 1, m)] = dx
        else:
            self._outbox[("B",) + key] = dx

    # -- communication ------------------------------------------------------

    def _comm_group(self, group) -> None:
        """One lowered group: REDUCE_GRADs start (asynchronous), the
        point-to-point members are posted together and waited for."""
        p2p = []
        for op in group:
            kind = str(op.kind)
            if kind == "REDUCE_GRAD":
                self._start_reduce(op)
            else:
                p2p.append(self._p2p(kind, op))
        if p2p:
            for work in dist.batch_isend_irecv(p2p):
                work.wait()

    def _p2p(self, kind: str, op) -> dist.P2POp:
        p, s, m = op.pipeline, op.stage, op.micro_batch
        peer = self._global(op.peer)
        if kind == "SEND_F":
            return dist.P2POp(dist.isend, self._outbox.pop(("F", p, s, m)).contiguous(), peer, self._group)
        if kind == "SEND_B":
            return dist.P2POp(dist.isend, self._outbox.pop(("B", p, s, m)).contiguous(), peer, self._group)
        shape, dtype = self._message_shape(m, s - 1 if kind == "RECV_F" else s)
        buffer = torch.empty(shape, dtype=dtype, device=self._device)
        (self._inbox_f if kind == "RECV_F" else self._inbox_b)[(p, s, m)] = buffer
        return dist.P2POp(dist.irecv, buffer, peer, self._group)

    def _message_shape(self, m: int, stage: int) -> tuple[torch.Size, torch.dtype]:
        """Shape and dtype of stage ``stage``'s output for micro-batch m: the
        whole model is run once (no grad, RNG state kept) per distinct input
        signature, on the first step that sees it."""
        args, kwargs = self._mbs[m]
        signature = tuple((tuple(t.shape), t.dtype) for t in itertools.chain(args, kwargs.values())
                          if isinstance(t, torch.Tensor))
        if signature not in self._shapes:
            shapes = []
            with torch.no_grad(), torch.random.fork_rng():
                x = self._model[0](*args, **kwargs)
                shapes.append((x.shape, x.dtype))
                for module in self._model[1:-1]:
                    x = module(x)
                    shapes.append((x.shape, x.dtype))
            self._shapes[signature] = shapes
        return self._shapes[signature][stage]

    def _start_reduce(self, op) -> None:
        params = [q for q in self.replicas[(op.pipeline, op.stage)].parameters() if q.requires_grad]
        for q in params:
            if q.grad is None:
                q.grad = torch.zeros_like(q)
        by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
        for q in params:
            by_dtype.setdefault(q.dtype, []).append(q)
        group = self._reduce_groups.get(op.stage)
        for bucket in by_dtype.values():
            flat = torch.cat([q.grad.reshape(-1) for q in bucket])
            work = dist.all_reduce(flat, group=group, async_op=True) if group is not None else None
            self._pending.append((bucket, flat, work))

    def _finish_reductions(self) -> None:
        for bucket, flat, work in self._pending:
            if work is not None:
                work.wait()
            if self._scale_grads:
                flat.div_(self._n)
            offset = 0
            for q in bucket:
                q.grad = flat[offset:offset + q.numel()].view_as(q)
                offset += q.numel()
        self._pending = []


def _check_model(stages: Sequence[nn.Module], schedule, world: int) -> None:
    check_single_group(schedule)
    if schedule.workers != world:
        raise ValueError(f"the {schedule.name} schedule has {schedule.workers} workers but the process group has "
                         f"{world} ranks (world size must equal the worker count)")
    stages = list(stages)
    if len(stages) != schedule.stages:
        raise ValueError(f"the model is cut into {len(stages)} stages but the {schedule.name} schedule has "
                         f"{schedule.stages}")
    for index, module in enumerate(stages):
        if not isinstance(module, nn.Module):
            raise TypeError(f"stages[{index}] is a {type(module).__name__}, not a torch.nn.Module")
