"""The greeting of every outbound call, as 8 kHz audio a SIP call can play.

合同二(六): "114 外呼通知车主挪车时，使用统一前缀通知语，暂定：“您好，这是公安 110 挪车服务
专线，您是苏XXXXXX 车主吗？”". The engine renders that text with the plate
(:meth:`movecar_core.contract.Greeting.render`); this module turns it into speech with
espeak-ng and sox, on Debian 12's packages:

- The voice ``cmn-latn-pinyin`` speaks Chinese characters (the voice ``cmn`` reads them as
  pinyin with tone numbers, "ni3 hao3").
- Numbers are read as numbers ("110" as 一百一十), but a phone service reads plates and
  numbers digit by digit, 1 as 幺 ("114" is 幺幺四): :func:`speakable` writes every digit
  as its character, separated, and every Latin letter of a plate on its own (the voice
  says letters as Chinese speakers name them).
- baresip's ``aufile`` plays only a file at the codec's rate: 8 kHz, mono, 16-bit; sox
  converts, with ``gain -n -1`` (normalise to -1 dBFS) so the resampling never clips.
- A stretch of silence follows the speech (``listen_s``): the call stays up that long for
  the owner's answer to be recorded; when the file ends, baresip 1.0.0 hangs up by itself.

Files are cached by greeting version, plate and the exact text spoken, so each plate's
greeting is synthesised once per version of the greeting (a new written notice, 二(六)).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unicodedata
import wave
from pathlib import Path

import attrs

#: Bump when the synthesis changes, so cached files of the old recipe are not reused.
RECIPE = 1
#: How a phone service says digits: 1 is 幺 (yāo), so that 1 and 7 are not confused.
DIGITS = "零幺二三四五六七八九"
#: The voice that speaks Chinese characters (``cmn`` would spell pinyin).
VOICE = "cmn-latn-pinyin"
#: The audio ``aufile`` can play on a G.711 call.
SAMPLE_RATE = 8000
#: Longest greeting text accepted (the contract's is 30 characters with the plate).
MAX_TEXT = 200
#: Separators inside a written plate (苏D·12345) that are not spoken.
_SILENT = frozenset("·・•‧")
_TIMEOUT_S = 60.0


class GreetingError(Exception):
    """The greeting cannot be turned into audio (a tool is missing or failed)."""


def speakable(text: str) -> str:
    """``text`` as the voice should read it: digits one by one (1 as 幺), letters one by
    one, every other character as written; one line, single spaces.

    >>> speakable("您好，这是公安 110 挪车服务专线，您是苏D12345 车主吗？")
    '您好，这是公安 幺 幺 零 挪车服务专线，您是苏 D 幺 二 三 四 五 车主吗？'
    """
    out: list[str] = []
    for char in text:
        # Full-width digits and letters (１, Ｄ) are read as their ASCII twins; Chinese
        # punctuation stays as written (the voice pauses on it).
        plain = unicodedata.normalize("NFKC", char)
        if len(plain) == 1 and "0" <= plain <= "9":
            out.append(f" {DIGITS[ord(plain) - 48]} ")
        elif len(plain) == 1 and plain.isascii() and plain.isalpha():
            out.append(f" {plain.upper()} ")
        elif char in _SILENT or not char.isprintable():
            out.append(" ")
        else:
            out.append(char)
    return " ".join("".join(out).split())


def wav_seconds(path: Path) -> float:
    """The length of a PCM WAV file, from its header."""
    try:
        with wave.open(str(path), "rb") as audio:
            rate = audio.getframerate()
            return audio.getnframes() / rate if rate else 0.0
    except (wave.Error, EOFError, OSError) as exc:
        raise GreetingError(f"{path.name}: not a readable WAV file ({exc})") from None


@attrs.frozen
class GreetingAudio:
    """A greeting ready to play: the file, how long the speech lasts (the owner who hangs
    up before then hung up during the greeting) and how long the whole file lasts."""

    path: Path
    spoken_s: float
    total_s: float


def missing_tools(*names: str) -> list[str]:
    """Those of ``names`` that are not on the PATH."""
    return [name for name in names if shutil.which(name) is None]


class GreetingSynthesizer:
    """Speech for greeting texts, cached in ``cache_dir``."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        listen_s: float = 10.0,
        voice: str = VOICE,
        espeak: str = "espeak-ng",
        sox: str = "sox",
    ) -> None:
        if not 0 <= listen_s <= 600:
            raise ValueError(f"listen_s={listen_s!r}: from 0 to 600 seconds")
        self.cache_dir = Path(cache_dir)
        self.listen_s = listen_s
        self.voice = voice
        self.espeak = espeak
        self.sox = sox
        self._lock = threading.Lock()

    def name_for(self, text: str, version: str, plate: str) -> str:
        """The cache file's name for a greeting (by version, plate and spoken text)."""
        spoken = speakable(text)
        key = json.dumps(
            [RECIPE, version, plate, spoken, self.voice, self.listen_s], ensure_ascii=False
        )
        return f"greeting-{hashlib.sha256(key.encode()).hexdigest()[:20]}.wav"

    def prepare(self, text: str, *, version: str = "", plate: str = "") -> GreetingAudio:
        """The audio of ``text`` (the rendered greeting), synthesised once and cached."""
        if not text.strip() or len(text) > MAX_TEXT:
            raise GreetingError(f"a greeting is 1 to {MAX_TEXT} characters")
        target = self.cache_dir / self.name_for(text, version, plate)
        with self._lock:
            if not target.exists():
                self._synthesise(speakable(text), target)
        total_s = wav_seconds(target)
        # sox pads exactly listen_s of silence (listen_s * 8000 samples) after the speech.
        return GreetingAudio(target, max(0.0, total_s - self.listen_s), total_s)

    def silence(self, seconds: float) -> Path:
        """A file of ``seconds`` of silence, the call's audio until it is answered.

        A carrier's 183 with SDP (early media: the ringback tone, 彩铃) starts baresip's
        audio source before the owner answers; the greeting played then would be heard by
        nobody, and at its end baresip would hang up a call still ringing.
        """
        if not 0 < seconds <= 3600:
            raise GreetingError(f"silence of {seconds!r} s: from 0 to 3600")
        target = self.cache_dir / f"silence-{round(seconds * 1000)}ms.wav"
        with self._lock:
            if not target.exists():
                missing = missing_tools(self.sox)
                if missing:
                    raise GreetingError(f"cannot make audio: {', '.join(missing)} missing")
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix=".synth-") as work:
                    made = Path(work, "silence.wav")
                    rate = ["-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer"]
                    self._run([self.sox, "-n", *rate, str(made), "trim", "0", f"{seconds:g}"])
                    os.replace(made, target)
        return target

    def _synthesise(self, spoken: str, target: Path) -> None:
        missing = missing_tools(self.espeak, self.sox)
        if missing:
            raise GreetingError(f"cannot synthesise the greeting: {', '.join(missing)} missing")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix=".synth-") as work:
            raw = Path(work, "raw.wav")
            speech = Path(work, "speech.wav")
            full = Path(work, "full.wav")
            # The text goes on stdin: it never reaches espeak-ng's options.
            self._run([self.espeak, "-v", self.voice, "-w", str(raw), "--stdin"], spoken)
            convert = ["-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer"]
            self._run([self.sox, str(raw), *convert, str(speech), "gain", "-n", "-1"])
            self._run([self.sox, str(speech), str(full), "pad", "0", f"{self.listen_s:g}"])
            os.replace(full, target)  # whole or not at all: a cached file is always complete

    @staticmethod
    def _run(argv: list[str], stdin: str | None = None) -> None:
        try:
            done = subprocess.run(
                argv,
                input=None if stdin is None else stdin.encode("utf-8"),
                capture_output=True,
                timeout=_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GreetingError(f"{Path(argv[0]).name} failed: {exc}") from None
        if done.returncode != 0:
            why = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
            raise GreetingError(
                f"{Path(argv[0]).name} failed (status {done.returncode}): {why[0][:200]}"
            )
