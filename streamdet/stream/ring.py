"""A fixed-capacity ring of float32 samples that remembers how many it has ever seen."""

from __future__ import annotations

import numpy as np


class SampleRing:
    """Keeps the latest ``capacity`` samples; memory is allocated once."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._write = 0  # next write position
        self.total = 0  # samples ever written

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def extend(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        size, capacity, write = samples.size, self.capacity, self._write
        if size >= capacity:
            # Only the newest `capacity` samples can survive; write them in order from 0.
            self._buf[:] = samples[-capacity:]
            self._write = 0
        elif write + size <= capacity:
            # The common case (a 20-ms frame into a 4-s ring): one copy, without the wrapped part's
            # empty slice assignment, which cost as much as the copy itself.
            self._buf[write:write + size] = samples
            self._write = (write + size) % capacity
        else:
            first = capacity - write
            self._buf[write:] = samples[:first]
            self._buf[:size - first] = samples[first:]
            self._write = size - first
        self.total += size

    def latest(self, n: int) -> np.ndarray:
        """A copy of the newest ``n`` samples, oldest first."""
        if not 0 <= n <= len(self):
            raise ValueError(f"asked for {n} samples, the ring holds {len(self)}")
        start = (self._write - n) % self.capacity
        if start + n <= self.capacity:
            return self._buf[start:start + n].copy()
        return np.concatenate([self._buf[start:], self._buf[:start + n - self.capacity]])
