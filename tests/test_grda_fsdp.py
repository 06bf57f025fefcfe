"""GRDA on parameters sharded by FSDP2 (``torch.distributed.fsdp.fully_shard``), 2 ranks on the CPU over gloo.

Each rank trains on its half of a global batch; FSDP2 averages the gradients, so the sharded run must give the weights
of one process training on the whole batch (within 1e-6) and the same zeros. The shards are uneven (5 rows over 2
ranks) and some are empty (a 1-row weight and its bias live on rank 0 only). Checked for each implementation (the
fused CPU kernel takes the local shards), for ``accumulator_init="uniform"`` (each rank keeps its shard of the same
draw) and for a gradient laid out unlike its parameter (redistributed first); and that the state stays DTensor, that
global sparsity is an all-reduce of local zero counts (no gather), and that distributed checkpointing
(``torch.distributed.checkpoint``) saves and restores GRDA's state bit for bit. bf16 parameters, under FSDP2 and DDP,
keep float32 accumulators (FSDP2: DTensors with the parameter's placements), through the DCP round trip too, and train
like one process.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

import grda
from grda import GRDA

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo"
    ),
]

WORLD = 2
LR, C, MU = 0.1, 0.3, 0.6
STEPS, MORE = 10, 3
CONFIGS = {  # name -> GRDA keyword arguments
    "auto": {},
    "fused": {"impl": "fused"},
    "foreach": {"impl": "foreach"},
    "reference": {"impl": "reference"},
    "uniform": {"accumulator_init": "uniform", "accumulator_seed": 5},
}


def make_model(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)
    )


def batches(steps: int, offset: int = 0):
    g = torch.Generator().manual_seed(100 + offset)
    return [(torch.randn(8, 6, generator=g), torch.randn(8, 1, generator=g)) for _ in range(steps)]


def train(model, opt, data, rank=None) -> None:
    for x, y in data:
        if rank is not None:  # this rank's half of the global batch
            x, y = x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def bf16(data):
    return [(x.bfloat16(), y.bfloat16()) for x, y in data]


def shard(model, mesh):
    from torch.distributed.fsdp import fully_shard

    for m in model:
        if isinstance(m, torch.nn.Linear):
            fully_shard(m, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def replicated_case_start() -> torch.Tensor:
    return torch.randn(5, 3, generator=torch.Generator().manual_seed(3))


def replicated_case_grads():
    g = torch.Generator().manual_seed(4)
    return [torch.randn(5, 3, generator=g) for _ in range(3)]


def _no_gather(*args, **kwargs):
    raise AssertionError("sparsity must be an all-reduce of counts, never a gather")


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    mesh = init_device_mesh("cpu", (WORLD,))
    results = {}
    for name, kwargs in CONFIGS.items():
        model = shard(make_model(), mesh)
        opt = GRDA(model.parameters(), lr=LR, c=C, mu=MU, **kwargs)
        train(model, opt, batches(STEPS), rank)
        for p in model.parameters():
            a = opt.state[p]["accumulator"]
            assert isinstance(p, DTensor) and isinstance(a, DTensor), "the state stays DTensor"
            assert a.placements == p.placements and a.shape == p.shape
        if name == "fused":  # the CPU kernel took the local shards, empty ones included
            plans = [plan for group_plans in opt._fast.plans.values() for plan in group_plans.values()]
            assert plans and all(plan.kernels and not plan.foreach for plan in plans)
        gathers = {n: getattr(dist, n) for n in ("all_gather", "all_gather_into_tensor", "gather", "all_gather_object")}
        for n in gathers:
            setattr(dist, n, _no_gather)
        try:
            counts, sparsity = grda.zero_counts(model), grda.sparsity(model)
        finally:
            for n, f in gathers.items():
                setattr(dist, n, f)
        full = {n: p.full_tensor() for n, p in model.named_parameters()}  # for the comparison only
        local_numel = {n: p.to_local().numel() for n, p in model.named_parameters()}
        results[name] = {"full": full, "counts": counts, "sparsity": sparsity, "local_numel": local_numel}

    # A gradient laid out unlike its parameter (replicated, the parameter sharded) is redistributed first.
    p = torch.nn.Parameter(distribute_tensor(replicated_case_start(), mesh, [Shard(0)], src_data_rank=None))
    opt = GRDA([p], lr=LR, c=C, mu=MU)
    for g in replicated_case_grads():
        p.grad = distribute_tensor(g, mesh, [Replicate()], src_data_rank=None)
        opt.step()
    assert opt.state[p]["accumulator"].placements == (Shard(0),)
    results["replicated_grad"] = p.full_tensor()

    # Distributed checkpointing: save, go on; a fresh model and optimizer load the checkpoint and go on alike.
    model = shard(make_model(), mesh)
    opt = GRDA(model.parameters(), lr=LR, c=C, mu=MU)
    train(model, opt, batches(STEPS), rank)
    model_sd, optim_sd = get_state_dict(model, opt)
    checkpoint = os.path.join(out_dir, "dcp")
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=checkpoint)
    train(model, opt, batches(MORE, offset=1), rank)
    fresh = shard(make_model(seed=9), mesh)
    fresh_opt = GRDA(fresh.parameters(), lr=LR, c=C, mu=MU)
    model_sd, optim_sd = get_state_dict(fresh, fresh_opt)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=checkpoint)
    set_state_dict(fresh, fresh_opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    train(fresh, fresh_opt, batches(MORE, offset=1), rank)
    for (n, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p.to_local(), q.to_local()), f"{n} differs after the DCP round trip"
        assert torch.equal(opt.state[p]["accumulator"].to_local(), fresh_opt.state[q]["accumulator"].to_local())
        assert opt.state[p]["tau"] == fresh_opt.state[q]["tau"] and fresh_opt.state[q]["step"] == STEPS + MORE
    results["dcp"] = True

    # bf16 parameters: float32 accumulators under FSDP2, kept through DCP (torch would cast them to bf16 on loading)
    model = shard(make_model().bfloat16(), mesh)
    opt = GRDA(model.parameters(), lr=LR, c=C, mu=MU)
    train(model, opt, bf16(batches(STEPS)), rank)
    for p in model.parameters():
        a = opt.state[p]["accumulator"]
        assert isinstance(a, DTensor) and a.placements == p.placements
        assert a.dtype == torch.float32 and p.dtype == torch.bfloat16, "a float32 accumulator"
    results["fsdp_bf16"] = {n: p.full_tensor() for n, p in model.named_parameters()}
    model_sd, optim_sd = get_state_dict(model, opt)
    checkpoint = os.path.join(out_dir, "dcp_bf16")
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=checkpoint)
    train(model, opt, bf16(batches(MORE, offset=1)), rank)
    fresh = shard(make_model(seed=9).bfloat16(), mesh)
    fresh_opt = GRDA(fresh.parameters(), lr=LR, c=C, mu=MU)
    model_sd, optim_sd = get_state_dict(fresh, fresh_opt)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=checkpoint)
    set_state_dict(fresh, fresh_opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    train(fresh, fresh_opt, bf16(batches(MORE, offset=1)), rank)
    for (n, p), q in zip(model.named_parameters(), fresh.parameters()):
        a, b = opt.state[p]["accumulator"].to_local(), fresh_opt.state[q]["accumulator"].to_local()
        assert b.dtype == torch.float32 and torch.equal(a, b), f"{n}: bf16 DCP round trip"
        assert torch.equal(p.to_local(), q.to_local())

    # bf16 parameters under DDP: float32 accumulators, the same weights on every rank
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(make_model().bfloat16())
    opt = GRDA(ddp.parameters(), lr=LR, c=C, mu=MU)
    train(ddp, opt, bf16(batches(STEPS)), rank)
    assert all(opt.state[p]["accumulator"].dtype == torch.float32 for p in ddp.parameters())
    results["ddp_bf16"] = {n: p.detach().clone() for n, p in ddp.module.named_parameters()}
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_sharded_grda_matches_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    assert all(r["dcp"] for r in ranks)
    p = torch.nn.Parameter(replicated_case_start())
    opt = GRDA([p], lr=LR, c=C, mu=MU)
    for g in replicated_case_grads():
        p.grad = g
        opt.step()
    for r in ranks:
        torch.testing.assert_close(r["replicated_grad"], p.detach(), rtol=0, atol=1e-6)
    for name, kwargs in CONFIGS.items():
        model = make_model()
        opt = GRDA(model.parameters(), lr=LR, c=C, mu=MU, **kwargs)
        train(model, opt, batches(STEPS))
        want_counts = grda.zero_counts(model)
        assert sum(z for z, _ in want_counts.values()) > 5, "the case must prune"
        for r in ranks:
            got = r[name]
            for n, p in model.named_parameters():
                torch.testing.assert_close(got["full"][n], p.detach(), rtol=0, atol=1e-6, msg=f"{name} {n}")
            assert got["counts"] == want_counts, name
            assert got["sparsity"] == grda.sparsity(model)
        # uneven and empty shards were exercised
        local = [r[name]["local_numel"] for r in ranks]
        assert local[0]["0.weight"] == 18 and local[1]["0.weight"] == 12
        assert local[0]["4.bias"] == 1 and local[1]["4.bias"] == 0
    # bf16: FSDP2 and DDP reduce the gradients in bf16, one process does not: within two bf16 ulps of its weights
    model = make_model().bfloat16()
    opt = GRDA(model.parameters(), lr=LR, c=C, mu=MU)
    train(model, opt, bf16(batches(STEPS)))
    assert all(opt.state[p]["accumulator"].dtype == torch.float32 for p in model.parameters())
    for r in ranks:
        for name in ("fsdp_bf16", "ddp_bf16"):
            for n, p in model.named_parameters():
                torch.testing.assert_close(
                    r[name][n].float(), p.detach().float(), rtol=2**-7, atol=2**-9, msg=f"{name} {n}"
                )
    for n in ranks[0]["ddp_bf16"]:
        assert torch.equal(ranks[0]["ddp_bf16"][n], ranks[1]["ddp_bf16"][n]), "DDP ranks agree"
