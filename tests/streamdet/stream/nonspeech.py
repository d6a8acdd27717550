"""Signals that are not speech, at 16 kHz, for the speech-gate tests (loaded by path: importlib mode)."""

from __future__ import annotations

import numpy as np

RATE = 16_000


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dtmf(seconds: float) -> np.ndarray:
    """Telephone keypad tones: 100 ms digits with 100 ms gaps, cycling through the keypad."""
    pairs = [(697, 1209), (697, 1336), (770, 1477), (852, 1209), (941, 1336), (770, 1336)]
    t = np.arange(int(0.1 * RATE)) / RATE
    out = np.zeros(int(seconds * RATE), np.float32)
    for i, start in enumerate(range(0, out.size - 2 * t.size, 2 * t.size)):
        low, high = pairs[i % len(pairs)]
        out[start:start + t.size] = 0.15 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
    return out


def white_noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def pink_noise(seconds: float, seed: int = 1) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    return (0.1 * pink / np.std(pink)).astype(np.float32)


def chords(seconds: float, bpm: float = 120.0) -> np.ndarray:
    """Music-like: a I-vi-IV-V progression of plucked three-note chords with harmonics, on the beat,
    with a kick drum on every other beat."""
    progression = [(261.6, 329.6, 392.0), (220.0, 277.2, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    beat = int(60.0 / bpm * RATE)
    out = np.zeros(int(seconds * RATE))
    for b, start in enumerate(range(0, out.size, beat)):
        n = min(beat, out.size - start)
        t = np.arange(n) / RATE
        envelope = np.exp(-5.0 * t)
        for f in progression[(b // 4) % len(progression)]:
            for harmonic in (1, 2, 3):
                out[start:start + n] += envelope * np.sin(2 * np.pi * f * harmonic * t) / harmonic
        if b % 2 == 0:
            out[start:start + n] += 2.0 * np.exp(-30.0 * t) * np.sin(2 * np.pi * 60.0 * t)
    return (0.08 * out).astype(np.float32)


KINDS = {"silence": silence, "tone": tone, "dtmf": dtmf, "white_noise": white_noise, "pink_noise": pink_noise,
         "chords": chords}
