"""Triton scorer: windows scored by a remote Triton Inference Server over gRPC.

``--engine triton://HOST:PORT/MODEL[/VERSION]`` (port 8001 by default). The model must come from
``offline export --format triton``: its ``config.pbtxt`` carries the engine manifest as the string
parameter ``streamdet_manifest``, read here through the model-config API, so the service checks the
input contract and publishes the right model id without any file of the model on this machine.
``score`` is natively async (``tritonclient.grpc.aio``); ``score_batch`` uses the blocking client.
Batching across ingest nodes happens in Triton (dynamic batching), so many stateless ingest nodes
can share one GPU pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from streamdet.errors import ManifestError
from streamdet.manifest import TRITON_MANIFEST_PARAMETER, EngineManifest
from streamdet.scoring.base import Scorer

log = logging.getLogger(__name__)

SCHEME = "triton://"
DEFAULT_PORT = 8001
INSTALL_HINT = "pip install 'tritonclient[grpc]'"


@dataclass(frozen=True)
class TritonTarget:
    """Where a Triton model lives: gRPC address, model name and optional version."""

    host: str
    port: int
    model: str
    version: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.address}/{self.model}" + (f"/{self.version}" if self.version else "")


def parse_triton_url(url: str) -> TritonTarget:
    """``triton://HOST[:PORT]/MODEL[/VERSION]`` → TritonTarget; anything else is a ManifestError."""
    if not url.startswith(SCHEME):
        raise ManifestError(f"{url}: a Triton engine looks like {SCHEME}HOST:PORT/MODEL")
    rest = url[len(SCHEME):]
    hostport, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if not hostport or not parts or len(parts) > 2:
        raise ManifestError(f"{url}: expected {SCHEME}HOST:PORT/MODEL[/VERSION]")
    host, sep, port_text = hostport.rpartition(":")
    if not sep:
        host, port_text = hostport, str(DEFAULT_PORT)
    if not port_text.isdigit() or not host:
        raise ManifestError(f"{url}: bad host or port {hostport!r}")
    version = parts[1] if len(parts) == 2 else ""
    if version and not version.isdigit():
        raise ManifestError(f"{url}: model version must be a number, got {version!r}")
    return TritonTarget(host.strip("[]") if host.startswith("[") else host, int(port_text), parts[0], version)


def manifest_from_config(config: dict[str, Any], where: str) -> EngineManifest:
    """The engine manifest inside a model config (JSON form), checked against the config's tensors."""
    raw = config.get("parameters", {}).get(TRITON_MANIFEST_PARAMETER, {}).get("string_value")
    if not raw:
        raise ManifestError(
            f"{where}: the model config has no {TRITON_MANIFEST_PARAMETER} parameter; "
            "export the model with `offline export CM --format triton`"
        )
    try:
        manifest = EngineManifest.model_validate(json.loads(raw))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ManifestError(f"{where}: invalid {TRITON_MANIFEST_PARAMETER}: {exc}") from exc
    if int(config.get("max_batch_size", 0)) < 1:
        raise ManifestError(f"{where}: the model must batch (max_batch_size >= 1)")
    inputs = {i["name"]: i for i in config.get("input", [])}
    outputs = {o["name"] for o in config.get("output", [])}
    spec = inputs.get(manifest.input_name)
    if spec is None:
        raise ManifestError(f"{where}: no input {manifest.input_name!r} (model has {sorted(inputs)})")
    dims = [int(d) for d in spec.get("dims", [])]
    if dims != [manifest.window_samples] or spec.get("data_type") != "TYPE_FP32":
        raise ManifestError(
            f"{where}: input {manifest.input_name} is {spec.get('data_type')} {dims}, "
            f"the manifest says TYPE_FP32 [{manifest.window_samples}]"
        )
    if manifest.prob_name not in outputs:
        raise ManifestError(f"{where}: no output {manifest.prob_name!r} (model has {sorted(outputs)})")
    return manifest


class TritonScorer(Scorer):
    """Scores through ``triton://HOST:PORT/MODEL``; the model's config supplies the manifest."""

    def __init__(self, url: str, max_batch: int = 64, timeout_s: float = 30.0) -> None:
        try:
            import tritonclient.grpc as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError as exc:
            raise ManifestError(f"{url} needs the Triton client: {INSTALL_HINT}") from exc
        self._grpc = grpcclient
        self.target = parse_triton_url(url)
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(self.target.address)
        model, version = self.target.model, self.target.version
        try:
            if not self._client.is_model_ready(model, version, client_timeout=timeout_s):
                raise ManifestError(f"{self.target}: model is not ready on the server")
            config = self._client.get_model_config(model, version, as_json=True, client_timeout=timeout_s)["config"]
        except InferenceServerException as exc:
            raise ManifestError(f"{self.target}: cannot reach the model ({exc.message()})") from exc
        self.manifest = manifest_from_config(config, str(self.target))
        self.contract = self.manifest
        self.model_id = self.manifest.model_id
        self.max_batch = max(1, min(max_batch, int(config["max_batch_size"])))
        self._aio: Any = None
        self._aio_loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Task[None] | None = None
        log.info("Triton scorer %s at %s (max batch %d)", self.model_id, self.target, self.max_batch)

    def _request(self, module: Any, chunk: np.ndarray) -> tuple[list[Any], list[Any]]:
        tensor = module.InferInput(self.manifest.input_name, list(chunk.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
        return [tensor], [module.InferRequestedOutput(self.manifest.prob_name)]

    def _chunks(self, windows: np.ndarray) -> list[np.ndarray]:
        return [windows[start : start + self.max_batch] for start in range(0, len(windows), self.max_batch)]

    def _probabilities(self, result: Any, count: int) -> np.ndarray:
        prob = np.asarray(result.as_numpy(self.manifest.prob_name), dtype=np.float32).reshape(-1)
        if prob.shape != (count,):
            raise RuntimeError(f"{self.target}: expected {count} probabilities, got shape {prob.shape}")
        return prob

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        scores = []
        for chunk in self._chunks(windows):
            inputs, outputs = self._request(self._grpc, chunk)
            result = self._client.infer(self.target.model, inputs, model_version=self.target.version,
                                        outputs=outputs, client_timeout=self.timeout_s)
            scores.append(self._probabilities(result, len(chunk)))
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def _async_client(self) -> Any:
        """One aio client per event loop (gRPC aio channels belong to the loop that made them)."""
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio_loop is not loop:
            import tritonclient.grpc.aio as aioclient

            self._aio = aioclient.InferenceServerClient(self.target.address)
            self._aio_loop = loop
        return self._aio

    async def score(self, windows: np.ndarray) -> np.ndarray:
        import tritonclient.grpc.aio as aioclient

        windows = self.check_windows(windows)
        client = self._async_client()
        chunks = self._chunks(windows)

        async def one(chunk: np.ndarray) -> np.ndarray:
            inputs, outputs = self._request(aioclient, chunk)
            result = await client.infer(self.target.model, inputs, model_version=self.target.version,
                                        outputs=outputs, client_timeout=self.timeout_s)
            return self._probabilities(result, len(chunk))

        scores = await asyncio.gather(*(one(chunk) for chunk in chunks))
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    async def aclose(self) -> None:
        """Close the async channel from inside its event loop."""
        if self._aio is not None:
            aio, self._aio = self._aio, None
            await aio.close()

    def close(self) -> None:
        """Close both channels; the async one is closed on its loop (scheduled if that loop is running)."""
        loop, self._aio_loop = self._aio_loop, None
        if self._aio is not None and loop is not None and not loop.is_closed():
            if loop.is_running():
                try:
                    on_loop = asyncio.get_running_loop() is loop
                except RuntimeError:
                    on_loop = False
                if on_loop:
                    self._closing = loop.create_task(self.aclose())
                else:
                    asyncio.run_coroutine_threadsafe(self.aclose(), loop)
            else:
                loop.run_until_complete(self.aclose())
        self._client.close()
