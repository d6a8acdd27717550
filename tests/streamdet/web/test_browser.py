"""Acceptance in a real browser: headless Chromium opens the page, clicks "Test with my microphone"
(its fake capture device plays a fake ALM-ADD clip), publishes it over WHIP, and the page shows the
alert. Needs ../shared, Debian's ``chromium`` and ``chromedriver``, and selenium; skips without them.
And a page opened during a call shows the call's state so far (``GET /streams``), fake scorer only.

The CM is ``vocoder_mellcnn``, for the reason given in tests/streamdet/service/test_whip_acceptance.py
(Opus-coded speech is spoof to the codec-trained CM); the clip keeps p_bonafide < 1e-5 through Opus.
Chromium loops the capture file, so the stream is fake from start to end wherever it joins.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

FAKE = "alm-add/audio/AudioLM/speech_497b5be1-e5f7-49dd-b244-67df3817d25b_fake.wav"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
STREAM = "browser-fake"


@pytest.fixture(scope="module")
def vocoder_scorer(released_checkpoint, tmp_path_factory):
    from offline.checkpoint import import_checkpoint
    from streamdet.scoring.torch_scorer import TorchScorer

    directory = tmp_path_factory.mktemp("vocoder_mellcnn")
    import_checkpoint(released_checkpoint("vocoder_mellcnn"), directory)
    return TorchScorer(directory, device="cpu")


@pytest.fixture
def capture_clip(shared_dir: Path, tmp_path: Path) -> Path:
    """The clip as Chromium's fake capture device wants it: 48 kHz, 16-bit PCM wav."""
    import soundfile as sf
    import soxr

    samples, rate = sf.read(shared_dir / FAKE, dtype="float32")
    path = tmp_path / "capture.wav"
    sf.write(path, soxr.resample(samples, rate, 48_000, quality="HQ"), 48_000, subtype="PCM_16")
    return path


def chromium(tmp_path: Path, monkeypatch, *arguments: str):
    """A headless Chromium under selenium (skips without them)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists() and not shutil.which(Path(binary).name):
            pytest.skip(f"{binary} is missing (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service as DriverService

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", *arguments,
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=DriverService(CHROMEDRIVER if Path(CHROMEDRIVER).exists()
                                                  else shutil.which("chromedriver")), options=options)


@pytest.fixture
def browser(capture_clip: Path, tmp_path: Path, monkeypatch):
    driver = chromium(
        tmp_path, monkeypatch,
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={capture_clip}",
        "--allow-loopback-in-peer-connection",  # WebRTC leaves loopback out by default; the service offers 127.0.0.1
        "--autoplay-policy=no-user-gesture-required",
    )
    yield driver
    driver.quit()


@pytest.fixture
def plain_browser(tmp_path: Path, monkeypatch):
    driver = chromium(tmp_path, monkeypatch)
    yield driver
    driver.quit()


@pytest.mark.reference
async def test_page_publishes_the_microphone_and_shows_the_alert(vocoder_scorer, start_service, browser, kit,
                                                                 tmp_path) -> None:
    from selenium.webdriver.common.by import By

    service = await start_service(vocoder_scorer, whip={"ice_addresses": ["127.0.0.1"]})
    listener = service.listen(f"score.{STREAM}")
    alerts = service.listen(f"alert.{STREAM}")

    def open_page_and_click() -> None:  # selenium blocks: run it off the event loop
        browser.get(f"http://127.0.0.1:{service.http_port}/")
        field = browser.find_element(By.ID, "mic-stream-id")
        field.clear()
        field.send_keys(STREAM)
        browser.find_element(By.ID, "mic-start").click()

    def alert_shown() -> bool:
        badge = browser.find_elements(By.CSS_SELECTOR, f'section.stream[data-stream-id="{STREAM}"] .alert.raised')
        return bool(badge)

    await asyncio.to_thread(open_page_and_click)
    raised = await alerts.get(timeout=60)  # the service's side of it
    assert (raised.event, raised.stream_id) == ("raised", STREAM)
    async with asyncio.timeout(15):
        while not await asyncio.to_thread(alert_shown):
            await asyncio.sleep(0.2)
    screenshot = tmp_path / "alert.png"
    await asyncio.to_thread(browser.save_screenshot, str(screenshot))
    assert screenshot.stat().st_size > 0

    def page_state() -> tuple[str, str, list[str]]:
        card = browser.find_element(By.CSS_SELECTOR, f'section.stream[data-stream-id="{STREAM}"]')
        log = browser.find_elements(By.CSS_SELECTOR, f'#alert-log li.raised[data-stream-id="{STREAM}"]')
        return card.get_attribute("class"), browser.find_element(By.ID, "mic-status").text, [li.text for li in log]

    card_class, status, log = await asyncio.to_thread(page_state)
    assert "alerting" in card_class and "mine" in card_class
    assert status.startswith("publishing as browser-fake")
    assert len(log) == 1 and "raised" in log[0]

    # Stop: the page DELETEs its WHIP resource and the stream ends normally.
    await asyncio.to_thread(lambda: browser.find_element(By.ID, "mic-stop").click())
    end = (await kit.collect_until_end(listener, STREAM, timeout=30))[-1]
    assert end.reason == "end" and end.windows >= 2 and end.alert
    assert service.whip.sessions == {}


async def test_a_page_opened_during_a_call_shows_its_state(start_service, plain_browser, kit, push) -> None:
    from selenium.webdriver.common.by import By

    # p_spoof 0.9: raised after 2 windows; no idle timeout during the test: no event after the raise
    service = await start_service(kit.FakeScorer(p_bonafide=0.1), limits={"idle_timeout_s": 600})
    alerts = service.listen("alert.")
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("call-7", kit.tone(6.0), end=False))
    assert (await alerts.get(30)).event == "raised"  # scored and raised before the page exists

    def open_page() -> None:
        plain_browser.get(f"http://127.0.0.1:{service.http_port}/")

    def card() -> tuple[str, str, str, str] | None:
        found = plain_browser.find_elements(By.CSS_SELECTOR, 'section.stream[data-stream-id="call-7"]')
        if not found:
            return None
        return (found[0].find_element(By.CSS_SELECTOR, ".alert").get_attribute("class"),
                found[0].find_element(By.CSS_SELECTOR, ".ingest").text,
                found[0].find_element(By.CSS_SELECTOR, ".last").text,
                plain_browser.find_element(By.ID, "ingests").text)

    await asyncio.to_thread(open_page)
    async with asyncio.timeout(30):
        while (shown := await asyncio.to_thread(card)) is None or not shown[2]:
            await asyncio.sleep(0.2)
    badge, ingest, last, ingests = shown
    assert badge == "alert raised" and ingest == "zmq"
    assert last.startswith("window 1 · 5.0 s · p_spoof 0.900")
    assert ingests.startswith(f"zmq {service.ingest_endpoint} · whip /whip/<stream_id>")


async def test_the_page_passes_the_http_token_from_its_url_fragment(start_service, plain_browser, kit, push) -> None:
    """With ``http.token`` set, the page opened as ``/#token=...`` follows /events and loads /streams
    with it, and takes it out of the address bar."""
    from selenium.webdriver.common.by import By

    service = await start_service(kit.FakeScorer(p_bonafide=0.1), http={"token": "s3cret"},
                                  limits={"idle_timeout_s": 600})
    alerts = service.listen("alert.")
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("call-8", kit.tone(6.0), end=False))
    assert (await alerts.get(30)).event == "raised"

    def shown() -> tuple[str, bool, str]:
        return (plain_browser.find_element(By.ID, "connection").text,
                bool(plain_browser.find_elements(By.CSS_SELECTOR, 'section.stream[data-stream-id="call-8"]')),
                plain_browser.current_url)

    await asyncio.to_thread(plain_browser.get, f"http://127.0.0.1:{service.http_port}/#token=s3cret")
    async with asyncio.timeout(30):
        while (state := await asyncio.to_thread(shown))[:2] != ("live", True):
            await asyncio.sleep(0.2)
    assert "s3cret" not in state[2]
