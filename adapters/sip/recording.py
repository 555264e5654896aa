"""One stored recording per call, from the two files baresip's recorder writes.

合同二(四): "坐席录音 ... 所有移车服务数据及电话录音资料，必须保存 3 年"; annex 2 (六)
"确保备份呼叫内容录音文件". baresip's ``sndfile`` writes two mono WAV files per call,
``dump-<time>-enc.wav`` (what was sent: the greeting) and ``dump-<time>-dec.wav`` (what
was received: the owner), and closes them after the call has ended. The legs are moved
into the call's own folder, mixed into one file with sox, and the legs removed: the host
keeps the mixed file (its ``RecordingStore`` encrypts it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from movecar_adapters.sip.greeting import GreetingError, wav_seconds
from movecar_core.calls import parse_call_key
from movecar_core.ports import Clock
from movecar_core.recordings import RecordingStore

_TIMEOUT_S = 60.0
#: A WAV header alone: a leg that holds no audio at all.
_HEADER_ONLY = 44


class RecordingError(Exception):
    """The legs of a call cannot be turned into its recording."""


@attrs.frozen
class Recording:
    path: Path
    duration_ms: int


def find_legs(folder: Path) -> tuple[Path | None, Path | None]:
    """The sent and the received leg in a recorder's folder (None when missing)."""
    sent = sorted(folder.glob("dump-*-enc.wav"))
    received = sorted(folder.glob("dump-*-dec.wav"))
    return (sent[-1] if sent else None, received[-1] if received else None)


def wait_closed(still_open: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Wait until the recorder has closed its files; False when it did not in time."""
    deadline = time.monotonic() + timeout_s
    while still_open():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def mix_call(recorder_folder: Path, call_folder: Path, *, sox: str = "sox") -> Recording | None:
    """Move the legs from ``recorder_folder`` to ``call_folder`` and mix them into
    ``call_folder/call.wav``. None when the call never carried audio (never answered)."""
    sent, received = find_legs(recorder_folder)
    legs = [leg for leg in (sent, received) if leg is not None]
    if not legs:
        return None
    call_folder.mkdir(parents=True, exist_ok=True)
    moved: list[Path] = []
    for leg, name in ((sent, "sent.wav"), (received, "received.wav")):
        if leg is not None:
            target = call_folder / name
            os.replace(leg, target)
            if target.stat().st_size > _HEADER_ONLY:
                moved.append(target)
    # Other files of the same call (a second audio stream after a re-INVITE) are not
    # kept: the next call of this agent must start from an empty folder.
    for stale in recorder_folder.glob("dump-*.wav"):
        stale.unlink(missing_ok=True)
    if not moved:
        return None
    mixed = call_folder / "call.wav"
    if len(moved) == 1:
        os.replace(moved[0], mixed)
    else:
        # -m mixes (each leg at half volume, so the sum cannot clip); the shorter leg is
        # padded with silence.
        argv = [sox, "-m", *map(str, moved), "-b", "16", str(mixed)]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RecordingError(f"sox failed: {exc}") from None
        if done.returncode != 0:
            why = done.stderr.decode("utf-8", "replace").strip()[-200:]
            raise RecordingError(f"sox failed (status {done.returncode}): {why}")
        for leg in moved:
            leg.unlink()
    try:
        seconds = wav_seconds(mixed)
    except GreetingError as exc:
        raise RecordingError(str(exc)) from None
    return Recording(mixed, round(seconds * 1000))


def into_store(store: RecordingStore, clock: Clock) -> Callable[[str, Path, int], None]:
    """An ``on_recording`` handler for :class:`~movecar_adapters.sip.SipTelephony` that
    puts each call's recording into ``store`` (encrypted at rest by the file store, its
    SHA-256 in the case's evidence, 二(四)), then removes the file and its folder.

    ``recorded_at`` is when the recording began: now, less its length. A put that fails
    leaves the file where it is (the adapter logs the error) for a person to store.
    """

    def handle(key: str, path: Path, duration_ms: int) -> None:
        case_id, _ = parse_call_key(key)
        began = clock.now() - dt.timedelta(milliseconds=duration_ms)
        with path.open("rb") as audio:
            store.put(case_id, key, audio, recorded_at=began, duration_ms=duration_ms)
        path.unlink()
        with contextlib.suppress(OSError):  # not empty: keep what else is there
            path.parent.rmdir()

    return handle
