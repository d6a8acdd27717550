"""The whole cross-validation in order, and shipping a candidate trained and calibrated on everything."""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from offline.crossval.config import CandidateSettings, CrossvalConfig
from offline.crossval.folds import Fold, make_folds
from offline.crossval.folds_run import (
    Replays,
    all_fold_scores,
    calibration_threshold,
    counted_real,
    fit_head,
    row_labels,
)
from offline.crossval.report import candidate_report, write_report
from offline.crossval.stages import (
    TRUNKS,
    load_augmented,
    load_replays,
    replay_policy,
    run_augmented,
    run_replays,
    trunk_loader,
)
from offline.datasets import BONAFIDE
from offline.recipes.field import FieldClip, read_field_list, summary
from streamdet.cm import load_cm, save_cm
from streamdet.errors import ConfigError
from streamdet.manifest import Calibration

log = logging.getLogger(__name__)

STAGES = ("replay", "augment", "folds", "report")


def run_crossval(config: CrossvalConfig, stages: Sequence[str] = STAGES) -> list[Path]:
    """Run the stages asked for (each resumes); returns the report files written (if ``report``)."""
    clips = read_field_list(config.field_list)
    folds = make_folds(clips, config.folds, config.seed, config.evaluate_origins)
    kinds = [k for k in TRUNKS if any(c.trunk == k for c in config.candidates)]
    for kind in kinds:
        if "replay" in stages:
            run_replays(config, clips, trunk_loader(config, kind), kind=kind)
        if "augment" in stages:
            run_augmented(config, clips, trunk_loader(config, kind), kind=kind)
    if "folds" not in stages and "report" not in stages:
        return []
    cm = load_cm(config.cm)
    manifest_threshold = cm.manifest.calibration.spoof_threshold if cm.manifest.calibration else None
    reports = {}
    for kind in kinds:  # one trunk's features in memory at a time
        replays: Replays = {c: load_replays(config, clips, c, kind) for c in config.channels}
        augmented = load_augmented(config, sorted({c.group for c in clips}), kind)
        for candidate in (c for c in config.candidates if c.trunk == kind):
            scores = all_fold_scores(config, folds, candidate, cm, manifest_threshold, replays, augmented)
            if "report" in stages:
                reports[candidate.name] = candidate_report(folds, scores, replays, config.within_s, replay_policy(config))
        del replays, augmented
    ordered = {c.name: reports[c.name] for c in config.candidates if c.name in reports}
    return write_report(config.out, ordered, folds) if ordered else []


def _candidate(config: CrossvalConfig, name: str) -> CandidateSettings:
    for candidate in config.candidates:
        if candidate.name == name:
            if candidate.threshold != "train_fold":
                raise ConfigError(f"{name}: only a candidate calibrated on the training folds can be shipped")
            return candidate
    raise ConfigError(f"no candidate {name!r} in the config; known: {', '.join(c.name for c in config.candidates)}")


def data_card(clips: Sequence[FieldClip], config: CrossvalConfig, name: str) -> str:
    """DATA.md of a shipped CM: what it was trained and calibrated on, licences as found, how to rebuild it."""
    licences: dict[str, set[str]] = {}
    for c in clips:
        licences.setdefault(c.group, set()).add(c.license or "unstated")
    lines = [f"# {name}: training data", "",
             f"The trunk (mel front-end and convolutions) is `{config.cm.name}`'s, unchanged; the head was fine-tuned "
             "on every clip below (replayed windows under the channels "
             f"{', '.join(config.channels)}, plus field-augmented windows: rooms, noise, babble, loudness, MP3/AAC, "
             "resampling chains, telephone channels) and calibrated on all real windows "
             f"({config.calibration_channel}, at most {100 * config.target_far:g} % alerting).", "",
             "Rebuild: `offline data asterisk`, `offline data tts-spoofs`, `offline data field --field-data "
             "../shared/field-data --alm-add ../shared/alm-add`, then `offline crossval --config "
             f"configs/field/crossval.toml --ship {name} --ship-out streamdet/pretrained/{name}`.", "",
             "| origin | label | source / system | clips | minutes | licence as found |",
             "| --- | --- | --- | ---: | ---: | --- |"]
    for origin, label, group, count, minutes in summary(clips):
        lines.append(f"| {origin} | {label} | {group} | {count} | {minutes:.1f} | {'; '.join(sorted(licences[group]))} |")
    lines += ["", "Audio is referenced where it lies and never redistributed with the CM; the field-data "
              "clips are for research evaluation and calibration (see that folder's README)."]
    return "\n".join(lines) + "\n"


def ship(config: CrossvalConfig, name: str, out: Path) -> Path:
    """Train candidate ``name``'s head on every group, calibrate it on every real window, write a CM."""
    candidate = _candidate(config, name)
    clips = read_field_list(config.field_list)
    everything = Fold(-1, frozenset(), frozenset(c.group for c in clips))
    replays: Replays = {c: load_replays(config, clips, c, candidate.trunk) for c in config.channels}
    cm = load_cm(config.cm)
    if candidate.retrain_head:
        augmented = load_augmented(config, sorted(everything.train_groups), candidate.trunk)
        head, windows, _real = fit_head(candidate, cm, everything, replays, augmented)
        p_bonafide, state = head.p_bonafide, head.backend_state(cm)
    else:  # the CM as it is, recalibrated on every source
        p_bonafide = None
        state = cm.backend.state_dict()
    policy = replay_policy(config)
    real, fake = [], []
    for replay in replays[config.calibration_channel].values():
        p = replay.own_p_bonafide if p_bonafide is None else p_bonafide(replay.features)
        real.append(p[counted_real(replay, policy)])
        fake.append(p[row_labels(replay) != BONAFIDE])
    real, fake = np.concatenate(real), np.concatenate(fake)
    target_far = candidate.far(config)
    threshold = calibration_threshold(real, target_far)
    far = float(np.mean(1.0 - real >= threshold))
    detected = float(np.mean(1.0 - fake >= threshold))
    fitted = "the same windows trained the head, so" if candidate.retrain_head else "calibrated in-sample, so"
    description = (f"smallest spoof threshold with at most {100 * target_far:g} % of real speech windows "
                   f"alerting (windows under the speech gate left out, as the alert rule does); data: every "
                   f"field-data source and system replayed as calls ({config.calibration_channel}, "
                   f"service window geometry); real: {real.size} speech windows, false alarms {100 * far:.2f} %; "
                   f"fake: {fake.size} windows, detected {100 * detected:.2f} %; {fitted} held-out rates "
                   f"are worse (docs/field-accuracy.md, grouped cross-validation); "
                   f"calibrated {_dt.date.today().isoformat()}")
    if not candidate.retrain_head:
        manifest = cm.manifest.model_copy(update={
            "calibration": Calibration(spoof_threshold=threshold, criterion=f"target_far={target_far:g}",
                                       description=description)})
        out = Path(out)
        save_cm(out, state, manifest)
        log.info("recalibrated %s → %s (spoof threshold %.6f)", name, out, threshold)
        return out
    what = (f"{cm.manifest.name}'s trunk with its head fine-tuned" if candidate.architecture is None
            else f"{candidate.architecture} trained from scratch")
    manifest = cm.manifest.model_copy(update={
        "name": name,
        "architecture": candidate.architecture or cm.manifest.architecture,
        "trained_on": (f"{what} on {len(clips)} clips of {len({c.group for c in clips})} sources and systems "
                       "(DATA.md): field-data, Asterisk prompts, ALM-ADD, classic TTS; field augmentation and "
                       "telephone channels"),
        "source": f"offline crossval --ship {name} ({config.field_list.name}, {windows} training windows)",
        "source_sha256": "",
        "calibration": Calibration(spoof_threshold=threshold, criterion=f"target_far={target_far:g}",
                                   description=description),
    })
    out = Path(out)
    save_cm(out, state, manifest)
    (out / "DATA.md").write_text(data_card(clips, config, name), encoding="utf-8")
    log.info("shipped %s → %s (spoof threshold %.6f)", name, out, threshold)
    return out
