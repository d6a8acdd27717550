"""The embedded scorer: a CM directory run by PyTorch (CPU, or CUDA with fp16 autocast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamdet.cm import load_cm
from streamdet.scoring.base import Scorer


class TorchScorer(Scorer):
    def __init__(
        self,
        cm_dir: str | Path,
        device: str = "auto",
        w2v2_source: str | None = None,
        max_batch: int = 64,
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.cm = load_cm(cm_dir, w2v2_source=w2v2_source, device=self.device)
        self.contract = self.cm.manifest
        self.model_id = self.cm.manifest.model_id
        self.max_batch = max_batch
        # fp16 on GPU only: on CPU half precision is slower and changes scores for nothing.
        self.use_fp16 = self.device.type == "cuda"

    @torch.inference_mode()
    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        x = torch.from_numpy(windows).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_fp16):
            logits = self.cm(x)
        return torch.softmax(logits.float(), dim=-1)[:, 0].cpu().numpy()
