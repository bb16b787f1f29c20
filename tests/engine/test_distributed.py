import os

import torch

from fewshot_det.engine.launch import launch
from test_ddp import DDP_WARNINGS
from test_train_loop import make_cfg, voc_spec  # noqa: F401 (fixture)
import ddp_worker


def test_two_gloo_processes_match_one_process(voc_spec, tmp_path, capfd):  # noqa: F811
    """2 CPU processes x 1 image == 1 process x 2 images (same sampler order, mean loss)."""
    for name, procs in (("one", 1), ("two", 2)):
        cfg = make_cfg(voc_spec, tmp_path / name, MAX_ITER=4, CHECKPOINT_PERIOD=2, STEPS=(3,))
        cfg.SOLVER.CLIP_GRADIENTS.ENABLED = False
        cfg.SOLVER.EMA.ENABLED = False
        launch(ddp_worker.run, procs, args=(cfg, str(tmp_path / name / "state.pt")))
    err = capfd.readouterr().err
    assert not [w for w in DDP_WARNINGS if w in err], err[-3000:]
    one = torch.load(tmp_path / "one" / "state.pt.0", weights_only=True)
    ranks = [torch.load(tmp_path / "two" / f"state.pt.{r}", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    for k, v in one["state"].items():
        torch.testing.assert_close(ranks[0]["state"][k], v, rtol=1e-5, atol=1e-6)
        assert torch.equal(ranks[0]["state"][k], ranks[1]["state"][k])  # ranks stay in sync
    # Only rank 0 writes checkpoints and logs.
    files = sorted(os.listdir(tmp_path / "two"))
    assert "model_final.pth" in files and "metrics.jsonl" in files
    assert not [f for f in files if "rank1" in f and f.endswith(".pth")]
