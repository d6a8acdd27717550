"""What the speech gate's VAD costs per window: judged afresh, and in a stream as the service runs it.

    STREAMDET_REFERENCE_DATA=../shared python scripts/vad_cost.py
"""

from __future__ import annotations

import os
import time

import numpy as np

from streamdet.audio import WINDOW_SAMPLES, load_audio
from streamdet.stream.speech import SpeechTracker, speech_fraction
from streamdet.stream.windower import Windower

CLIP = "alm-add/audio/AudioLM/speech_0944c955-dc0b-4c87-a006-02d0f12adeec_fake.wav"


def main() -> None:
    audio = np.tile(load_audio(os.path.join(os.environ["STREAMDET_REFERENCE_DATA"], CLIP)), 6)  # 60 s of speech
    speech_fraction(audio[:WINDOW_SAMPLES])  # loads the model
    repeats = 20
    started = time.process_time()  # CPU time: the VAD runs on one thread, and the machine may be busy
    for _ in range(repeats):
        speech_fraction(audio[:WINDOW_SAMPLES])
    fresh = (time.process_time() - started) / repeats

    windower, tracker, windows = Windower(16_000), SpeechTracker(), 0
    started = time.process_time()
    for start in range(0, audio.size, 3_200):  # 200 ms frames, as senders send them
        piece = audio[start:start + 3_200]
        tracker.push(piece)
        for window in windower.push(piece):
            tracker.fraction(window.start, window.end)
            windows += 1
    streamed = (time.process_time() - started) / windows
    print(f"VAD CPU time per 4.04-s window: {1000 * fresh:.1f} ms judged afresh, {1000 * streamed:.2f} ms in a stream "
          f"(hop 1 s, {windows} windows); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
