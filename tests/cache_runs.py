"""Helpers of the latent-cache tests (not a test module): a multi-video dataset, its cache, in-process runs that
record their per-iteration losses, and a record of the files a run opens."""

import glob
import sys
from pathlib import Path

from omegaconf import OmegaConf

import train_video
from diffusion_video import SATVideoDiffusionEngine
from test_train_finetune import SFT
from tools import precompute

def make_cache(model: str, paths: str, data: Path, output: Path) -> Path:
    return precompute.main(["--base", model, SFT, paths, "--output", str(output), "--data", str(data)])[0]


class LossRecorder:
    """Records every training/eval loss the engine computes, in order (float64 copies)."""

    def __init__(self, monkeypatch):
        self.losses: list[float] = []
        forward = SATVideoDiffusionEngine.forward

        def recording_forward(engine, x, batch):
            loss, log = forward(engine, x, batch)
            self.losses.append(float(loss.detach().double()))
            return loss, log

        monkeypatch.setattr(SATVideoDiffusionEngine, "forward", recording_forward)

    def take(self) -> list[float]:
        """The losses recorded since the last call."""
        losses, self.losses = self.losses, []
        return losses


def train(root: Path, paths: str, name: str, model: str, data: list[str], lr: float = 1.0, **args):
    """train_video.main in-process on `data`; returns (engine, checkpoint folder or None)."""
    save = root / f"ckpt-{name}"
    run_args = {"load": str(root / "weights/transformer"), "train_data": data, "valid_data": None,
                "save": str(save), "save_interval": 1000, "log_interval": 10, "experiment_name": name,
                "summary_dir": str(root), **args}
    override = root / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({"args": run_args, "deepspeed": {"optimizer": {"params": {"lr": lr}}}}), override)
    engine = train_video.main(["--base", model, SFT, paths, str(override), "--seed", "1"])
    folders = glob.glob(str(save / f"{name}-*"))
    return getattr(engine, "module", engine), (Path(folders[0]) if folders else None)


class OpenedFiles:
    """Paths opened through Python (builtins.open, io.open, os.open: the 'open' audit event) while `active`.
    An audit hook cannot be removed, so one hook serves the session and records only while a test turns it on."""

    hook_installed = False
    current: "OpenedFiles | None" = None

    def __init__(self):
        self.paths: list[str] = []
        if not OpenedFiles.hook_installed:
            sys.addaudithook(OpenedFiles._hook)
            OpenedFiles.hook_installed = True

    @staticmethod
    def _hook(event: str, event_args: tuple) -> None:
        if event == "open" and OpenedFiles.current is not None and isinstance(event_args[0], (str, bytes, Path)):
            OpenedFiles.current.paths.append(str(event_args[0]))

    def __enter__(self) -> "OpenedFiles":
        OpenedFiles.current = self
        return self

    def __exit__(self, *exc) -> None:
        OpenedFiles.current = None
