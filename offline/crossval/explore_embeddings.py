"""Exploration: do frozen pretrained speech representations separate unseen real and fake speech?

Two pretrained models ship inside PyPI wheels (model hubs are unreachable here):

- ``resemblyzer`` (Resemblyzer 0.1.4, Apache-2.0): a GE2E speaker encoder, a 3-layer LSTM over
  40-band mel (25 ms / 10 ms), trained on LibriSpeech and VoxCeleb;
- ``oww`` (openwakeword 0.5.1): Google's ``speech_embedding`` (96-d every 80 ms over 76 mel
  frames), an ONNX export run on onnxruntime.

Each service window (``streamdet.audio.WINDOW_SAMPLES``, hop 1 s) of the field-data groups is
replayed exactly as ``offline crossval`` replays it (``offline.crossval.embed.replay_group``: real
clips of a source chained into 3-minute calls, fakes into 1-minute calls, the service's windower),
embedded once (cached under ``--cache``), and a small head (logistic regression on standardised
pooled embeddings) is trained per grouped fold (``offline.crossval.folds.make_folds``: 5 folds,
seed 0) on the other folds and scores the held-out one. Reported, pooled over folds: window EER
and the fake windows detected at the pooled threshold where 1 % of real windows alert (wideband).

    python -m offline.crossval.explore_embeddings --field-data ../shared/field-data \\
        --cache /work/emb-cache --models oww resemblyzer

The wheels need not be installed: ``--packages DIR`` adds a folder holding the unpacked wheels to
the import path (only their model files are read; neither package's Python code is imported).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from offline.calibrate import threshold_for_false_alarm_rate
from offline.crossval.embed import GroupReplay, replay_group
from offline.crossval.folds import Fold, make_folds
from offline.crossval.head import balanced_weights
from offline.datasets import BONAFIDE
from offline.metrics import compute_eer
from offline.recipes.field import FieldClip, field_data_clips, read_field_list
from streamdet.audio import SAMPLE_RATE
from streamdet.stream.policy import StreamPolicy

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Frozen extractors: windows (batch, 64600) float in [-1, 1] → (features (batch, dim) float16, nan)


def _package_file(package: str, relative: str) -> Path:
    for entry in sys.path:
        candidate = Path(entry or ".") / package / relative
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{package}/{relative} not found on the import path (install the wheel or --packages)")


def slaney_mel_filterbank(n_fft: int, n_mels: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) area-normalised Slaney filters from 0 to Nyquist (librosa's default)."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2))
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / np.diff(mel_f)[:-1, None]
    upper = ramps[2:] / np.diff(mel_f)[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return (weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]).astype(np.float32)


class ResemblyzerExtractor:
    """GE2E LSTM: per window the mean of its 1.6-s partial embeddings (the model's utterance
    embedding, L2-normed) and the mean and std of the last LSTM layer's outputs: 768-d."""

    n_fft, hop, partial, partial_step = 400, 160, 160, 80

    def __init__(self) -> None:
        state = torch.load(_package_file("resemblyzer", "pretrained.pt"), map_location="cpu")["model_state"]
        self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self.window = torch.hann_window(self.n_fft, periodic=True)
        self.filters = torch.from_numpy(slaney_mel_filterbank(self.n_fft, 40))

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        # The package's preprocessing raises quiet audio to -30 dBFS (never lowers it).
        rms = x.square().mean(1, keepdim=True).sqrt().clamp_min(1e-6)
        x = x * (10 ** (-30 / 20) / rms).clamp_min(1.0)
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True).abs().square()
        mel = torch.matmul(self.filters, spec).transpose(1, 2)  # (batch, frames, 40)
        starts = range(0, mel.shape[1] - self.partial + 1, self.partial_step)
        partials = torch.stack([mel[:, s : s + self.partial] for s in starts], 1)  # (batch, parts, 160, 40)
        b, p = partials.shape[:2]
        outputs, (hidden, _) = self.lstm(partials.flatten(0, 1))
        embeds = torch.relu(self.linear(hidden[-1]))
        embeds = embeds / embeds.norm(dim=1, keepdim=True).clamp_min(1e-8)
        utterance = embeds.view(b, p, -1).mean(1)
        utterance = utterance / utterance.norm(dim=1, keepdim=True).clamp_min(1e-8)
        frames = outputs.reshape(b, p * self.partial, -1)
        features = torch.cat([utterance, frames.mean(1), frames.std(1)], 1)
        return features.numpy().astype(np.float16), np.full(len(windows), np.nan)


class OpenWakeWordExtractor:
    """Google speech_embedding via openwakeword's ONNX files: 96-d every 80 ms; per window the
    mean, std and max over its frames: 288-d."""

    frames, step = 76, 8

    def __init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        load = lambda name: ort.InferenceSession(  # noqa: E731
            str(_package_file("openwakeword", f"resources/models/{name}.onnx")), options,
            providers=["CPUExecutionProvider"])
        self.melspec = load("melspectrogram")
        self.embedding = load("embedding_model")

    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pcm = np.clip(np.asarray(windows, np.float32), -1, 1) * 32767.0  # the model reads int16-scaled PCM
        mel = self.melspec.run(None, {"input": pcm})[0][:, 0] / 10 + 2  # (batch, frames, 32)
        starts = range(0, mel.shape[1] - self.frames + 1, self.step)
        patches = np.stack([mel[:, s : s + self.frames] for s in starts], 1)  # (batch, n, 76, 32)
        b, n = patches.shape[:2]
        emb = self.embedding.run(None, {"input_1": patches.reshape(b * n, self.frames, 32, 1)})[0].reshape(b, n, -1)
        features = np.concatenate([emb.mean(1), emb.std(1), emb.max(1)], 1)
        return features.astype(np.float16), np.full(len(windows), np.nan)


EXTRACTORS: dict[str, Callable[[], Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]] = {
    "resemblyzer": ResemblyzerExtractor,
    "oww": OpenWakeWordExtractor,
}


class EveryNth:
    """Embeds only every ``n``-th window the replay asks for (rows in between get NaN features): the
    replay and its row numbers stay those of ``offline crossval``, the CPU cost drops ``n``-fold."""

    def __init__(self, extractor: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], n: int) -> None:
        self.extractor, self.n, self.seen = extractor, n, 0

    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(self.seen, self.seen + len(windows))
        self.seen += len(windows)
        keep = np.flatnonzero(rows % self.n == 0)
        features, own = self.extractor(windows[keep]) if keep.size else (None, None)
        dim = features.shape[1] if features is not None else self.dim
        self.dim = dim
        out = np.full((len(windows), dim), np.nan, np.float16)
        if keep.size:
            out[keep] = features
        return out, np.full(len(windows), np.nan)


# ---------------------------------------------------------------------------------------------
# Replays (cached), folds, heads, pooled numbers


def group_windows(cache: Path, model: str, every: int, clips: Sequence[FieldClip],
                  extractor: Callable[[], Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]],
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """group → (features of its embedded windows, their labels), replaying each group once."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    built = None
    for group in sorted({c.group for c in clips}):
        path = cache / f"{model}-every{every}" / f"{group.replace('/', '_')}.pkl"
        if not path.is_file():
            built = built or extractor()
            started = time.perf_counter()
            trunk = EveryNth(built, every)
            replay = replay_group(trunk, group, [c for c in clips if c.group == group], StreamPolicy(), "wideband",
                                  real_call_seconds=180.0, fake_call_seconds=60.0, seed=0)
            replay.save(path)
            log.info("%s %s: %d windows in %.0f s", model, group, replay.features.shape[0],
                     time.perf_counter() - started)
        replay = GroupReplay.load(path)
        labels = np.zeros(replay.features.shape[0], np.int64)
        for stream in replay.streams:
            labels[stream.scores.astype(np.int64)] = stream.label
        keep = ~np.isnan(replay.features[:, 0].astype(np.float32))
        out[group] = (replay.features[keep].astype(np.float32), labels[keep])
    return out


def train_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, hidden: int, seed: int = 0,
                   weight_decay: float = 1e-3, steps: int = 300) -> Callable[[np.ndarray], np.ndarray]:
    """A logistic regression (``hidden`` 0) or one-hidden-layer MLP on standardised features; returns
    a function giving P(spoof)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    torch.manual_seed(seed)
    dim = x.shape[1]
    net = (torch.nn.Linear(dim, 1) if hidden == 0 else
           torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(dim, hidden), torch.nn.ReLU(),
                               torch.nn.Dropout(0.2), torch.nn.Linear(hidden, 1)))
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y.astype(np.float32))
    wt = torch.from_numpy((w / w.sum()).astype(np.float32))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2 if hidden == 0 else 3e-3, weight_decay=weight_decay)
    net.train()
    for _ in range(steps):
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt, reduction="none") * wt).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()

    def p_spoof(features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(net(torch.from_numpy((features - mean) / std))[:, 0]).double().numpy()

    return p_spoof


def crossvalidate(windows: dict[str, tuple[np.ndarray, np.ndarray]], folds: Sequence[Fold], columns: slice,
                  hidden: int) -> dict[str, float]:
    """Pooled held-out window EER (%), fake windows detected at 1 % of real windows alerting (%), and
    the EER on the folds' own training windows (how well the head separates the sources it saw)."""
    real, fake, seen_eer = [], [], []
    for fold in folds:
        train = [g for g in sorted(fold.train_groups) if g in windows]
        x = np.concatenate([windows[g][0][:, columns] for g in train])
        y = np.concatenate([windows[g][1] for g in train])
        groups = np.concatenate([[g] * len(windows[g][1]) for g in train])
        p_spoof = train_logistic(x, y, balanced_weights(y, groups), hidden)
        seen = p_spoof(x)
        seen_eer.append(100.0 * compute_eer(-seen[y == BONAFIDE], -seen[y != BONAFIDE])[0])
        for g in sorted(fold.test_groups):
            scores = p_spoof(windows[g][0][:, columns])
            real.append(scores[windows[g][1] == BONAFIDE])
            fake.append(scores[windows[g][1] != BONAFIDE])
    real_p, fake_p = np.concatenate(real), np.concatenate(fake)
    threshold = threshold_for_false_alarm_rate(real_p, 0.01)
    return {"eer": 100.0 * compute_eer(-real_p, -fake_p)[0],
            "detected_at_1pct": 100.0 * float(np.mean(fake_p >= threshold)),
            "real_windows": real_p.size, "fake_windows": fake_p.size, "training_eer": float(np.mean(seen_eer))}


FEATURE_SETS: dict[str, dict[str, slice]] = {
    "resemblyzer": {"utterance": slice(0, 256), "lstm mean+std": slice(256, 768), "all": slice(0, 768)},
    "oww": {"mean": slice(0, 96), "mean+std": slice(0, 192), "mean+std+max": slice(0, 288)},
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field-data", type=Path, help="the field-data folder (sources.tsv)")
    parser.add_argument("--field-list", type=Path, help="or a field list (data/field/field.tsv)")
    parser.add_argument("--cache", type=Path, required=True, help="where embedded replays are kept")
    parser.add_argument("--models", nargs="+", choices=sorted(EXTRACTORS), default=sorted(EXTRACTORS))
    parser.add_argument("--every", type=int, nargs="+", default=[1],
                        help="embed every n-th window (one value, or one per model)")
    parser.add_argument("--packages", type=Path, help="a folder holding the unpacked wheels")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    if args.packages:
        sys.path.append(str(args.packages))
    if args.field_list:
        clips = [c for c in read_field_list(args.field_list) if c.origin == "field-data"]
    else:
        clips = field_data_clips(args.field_data)
    folds = make_folds(clips, 5, seed=0)
    every = args.every * len(args.models) if len(args.every) == 1 else args.every
    print("| representation | features | head | held-out windows (real / fake) | window EER | fake windows "
          "detected at 1 % real windows | EER on the training folds |\n"
          "| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for model, n in zip(args.models, every, strict=True):
        windows = group_windows(args.cache, model, n, clips, EXTRACTORS[model])
        for name, columns in FEATURE_SETS[model].items():
            for hidden in (0, 64):
                r = crossvalidate(windows, folds, columns, hidden)
                head = "logistic" if hidden == 0 else f"MLP {hidden}"
                print(f"| {model} | {name} | {head} | {r['real_windows']} / {r['fake_windows']} | "
                      f"{r['eer']:.1f} % | {r['detected_at_1pct']:.1f} % | {r['training_eer']:.1f} % |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
