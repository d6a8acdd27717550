"""Acceptance, end to end over loopback with the released codec Mel-LCNN (needs ../shared):

- a fake ALM-ADD clip sent with ``streamdet send`` raises an alert at a subscriber;
- a real clip the CM scores as bona fide raises none;
- every window's score equals the same CM's offline score of the same 64,600 samples (1e-5);
- malformed frames around a valid stream: its alert still arrives, /metrics counts the rejects.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamdet.audio import SAMPLE_RATE, fix_length, load_audio, load_window
from streamdet.client import Sender, Subscriber
from streamdet.service.events import WindowEvent
from streamdet.service.frames import encode_frame, parse_frame
from streamdet.stream.policy import StreamPolicy
from streamdet.stream.session import StreamSession

pytestmark = pytest.mark.reference

REPO = Path(__file__).resolve().parents[3]
# Picked by scoring every ALM-ADD clip with this CM: every window of FAKE has p_bonafide < 1e-7;
# every window of REAL (24 kHz, so the resampler is exercised) has p_bonafide > 0.75.
FAKE = "alm-add/audio/AudioLM/speech_0944c955-dc0b-4c87-a006-02d0f12adeec_fake.wav"
REAL = "alm-add/audio/HAM_TTS/speech_ground_truth_BAC009S0764W0158_real.wav"


@pytest.fixture(scope="session")
def codec_cm_dir(released_checkpoint, tmp_path_factory) -> Path:
    from offline.checkpoint import import_checkpoint

    directory = tmp_path_factory.mktemp("codec_mellcnn")
    import_checkpoint(released_checkpoint("codec_mellcnn"), directory)
    return directory


@pytest.fixture(scope="module")
def codec_scorer(codec_cm_dir: Path):
    from streamdet.scoring.torch_scorer import TorchScorer

    return TorchScorer(codec_cm_dir, device="cpu")


def offline_scores(scorer, path: Path, events: list[WindowEvent]) -> np.ndarray:
    """What the CM gives offline on the windows the service reported, cut from load_audio(path)."""
    audio = load_audio(path)
    windows = []
    for event in events:
        start, end = round(event.start * SAMPLE_RATE), round(event.end * SAMPLE_RATE)
        windows.append(fix_length(audio[start:end]))
    return scorer.score_batch(np.stack(windows))


def scores_of(events) -> list[WindowEvent]:
    return [e for e in events if e.event == "score"]


@pytest.mark.parametrize("clip", [FAKE, REAL])
def test_first_window_is_what_offline_evaluation_scores(shared_dir: Path, clip: str) -> None:
    from streamdet.audio import decode

    samples, rate = decode(shared_dir / clip)
    session = StreamSession("s", rate, samples.shape[1], StreamPolicy())
    windows = []
    for seq, start in enumerate(range(0, len(samples), rate // 50)):
        frame = parse_frame(encode_frame("s", seq, samples[start:start + rate // 50], rate, "s16le"), 1 << 20)
        windows += session.feed(frame.samples, frame.seq, 0.0)
    windows += session.finish("end")
    np.testing.assert_array_equal(windows[0].samples, load_window(shared_dir / clip))


async def test_fake_clip_sent_with_the_cli_raises_an_alert(shared_dir, codec_scorer, start_service, kit) -> None:
    service = await start_service(codec_scorer)
    listener = service.listen("score.fake-1")
    async with Subscriber(service.events_endpoint, ["alert."]) as subscriber:
        await subscriber.wait_connected()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        send = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamdet", "send", str(shared_dir / FAKE), "--endpoint",
            service.ingest_endpoint, "--stream-id", "fake-1", env=env, stdout=subprocess.PIPE)
        stdout, _ = await send.communicate()
        assert send.returncode == 0 and json.loads(stdout)["stream_id"] == "fake-1"
        alert = await subscriber.recv(timeout=120)
    assert (alert.event, alert.stream_id, alert.model_id) == ("raised", "fake-1", codec_scorer.model_id)
    assert alert.spoof and alert.p_spoof >= alert.spoof_threshold == alert.threshold == 0.5

    events = await kit.collect_until_end(listener, "fake-1", timeout=120)
    scores = scores_of(events)
    assert [(e.start, e.final) for e in scores] == [(float(i), False) for i in range(6)] + [(5.9625, True)]
    offline = offline_scores(codec_scorer, shared_dir / FAKE, scores)
    np.testing.assert_allclose([e.p_bonafide for e in scores], offline, rtol=0, atol=1e-5)


async def test_real_clip_raises_nothing(shared_dir, codec_scorer, start_service, kit) -> None:
    # k = n = 1: a single window at or above threshold would raise.
    service = await start_service(codec_scorer, alerts={"k": 1, "n": 1})
    listener = service.listen()
    async with Sender(service.ingest_endpoint) as sender:
        await sender.send_file(shared_dir / REAL, "real-1")
    events = await kit.collect_until_end(listener, "real-1", timeout=120)
    assert [e.event for e in events] == ["score"] * 3 + ["end"]
    scores = scores_of(events)
    assert all(e.p_spoof < 0.5 and not e.alert for e in scores)
    offline = offline_scores(codec_scorer, shared_dir / REAL, scores)
    np.testing.assert_allclose([e.p_bonafide for e in scores], offline, rtol=0, atol=1e-5)


async def test_malformed_frames_do_not_stop_a_valid_stream(shared_dir, codec_scorer, start_service, kit,
                                                            push) -> None:
    from streamdet.audio import decode

    service = await start_service(codec_scorer)
    listener = service.listen("score.valid")
    samples, rate = decode(shared_dir / FAKE)
    good = kit.frames_of("valid", samples, rate=rate, chunk=rate // 10)
    junk = [([b"x", b"y"], "malformed"), ([b"x", b"{", b""], "bad_json"),
            (good[3], "seq_out_of_order"),  # a replay of one of the valid stream's earlier frames
            ([b"x", b"{}", b"", b"extra"], "malformed")]
    messages, expected = [], Counter()
    for i, message in enumerate(good):
        messages.append(message)
        if i % 10 == 5:
            bad, reason = junk[(i // 10) % len(junk)]
            messages.append(bad)
            expected[reason] += 1
    async with Subscriber(service.events_endpoint, ["alert.valid"]) as subscriber:
        await subscriber.wait_connected()
        await kit.send_all(push(service.ingest_endpoint), messages)
        alert = await subscriber.recv(timeout=120)
    assert (alert.event, alert.stream_id) == ("raised", "valid")
    end = (await kit.collect_until_end(listener, "valid", timeout=120))[-1]
    assert (end.windows, end.dropped, end.duration) == (7, 0, 10.0)

    _, metrics = await kit.http_get(service, "/metrics")
    for reason, count in expected.items():
        assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason=reason) == count
    assert kit.metric_value(metrics, "streamdet_ingest_frames_total", adapter="zmq") == len(good)
