"""Data-parallel pre-training (torch.distributed, gloo, 2 CPU processes) matches a single-process run."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp

from inrecon.config import build_config
from inrecon.recon.population.common import load_model
from inrecon.recon.population.disinr import DisINRPretrainConfig, pretrain_disinr

CFG = dict(steps=8, subjects_per_step=4, n_levels=4, log2_table_size=8, encoder_width=16, decoder_width=16)
# float32 products: the test checks the data-parallel algorithm to float32 accuracy (bf16, where the CPU has it,
# would amplify the different summation order of the all-reduced gradients beyond that)
CFG["arch.mlp_dtype"] = "float32"


def _subjects():
    from tests.inr_fixtures import tiny_mri

    return [tiny_mri(seed=s, shape=(16, 16), n_coils=2) for s in range(4)]


def _worker(rank: int, world: int, rdv: str, out: str):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    try:
        pretrain_disinr(_subjects(), build_config(DisINRPretrainConfig, CFG), out, show_progress=False)
        # both ranks leave together: a rank that tore gloo down while the other was still in its last
        # collective aborted once ("terminate called without an active exception", stop 43's CI)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_process_gloo_matches_single_process(tmp_path):
    single = tmp_path / "single.safetensors"
    pretrain_disinr(_subjects(), build_config(DisINRPretrainConfig, CFG), single, show_progress=False)
    ddp = tmp_path / "ddp.safetensors"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    mp.spawn(_worker, args=(2, str(tmp_path / "rdv"), str(ddp)), nprocs=2, join=True)
    a, meta_a = load_model(single)
    b, meta_b = load_model(ddp)
    assert meta_b["world_size"] == 2 and meta_a["world_size"] == 1
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
