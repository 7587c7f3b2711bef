"""A small ctypes binding to espeak-ng, as shipped by the ``espeakng-loader`` package.

The synthesized corpus needs audio *and* the truth about what the audio says, so the engine is
initialized with ``espeakINITIALIZE_PHONEME_EVENTS`` and run in synchronous mode: one call to
:meth:`Espeak.synthesize` returns every sample plus the phoneme and word events with their sample
positions (espeak-ng stamps each event with the count of samples produced before it).

espeak-ng keeps its state in process globals, so there is one engine per process: create one
:class:`Espeak` in each worker process. Nothing here needs a system installation of espeak-ng.

espeak-ng reads voice variants only from files in its data directory, so the engine runs on a
private overlay of the package's data (symlinks, made once per process in a temp directory)
whose ``voices/!v`` is writable: :meth:`Espeak.define_variant` adds a variant there.
"""

from __future__ import annotations

import atexit
import ctypes
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqkit.errors import BackendUnavailableError, ConfigError

# espeak_AUDIO_OUTPUT: synthesize into the callback, return when done.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_Initialize options.
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
# espeak_EVENT_TYPE values we read.
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
# espeak_PARAMETER values.
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_PARAM_WORDGAP = 7
# espeak_Synth flags and position type.
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
# espeak_TextToPhonemes phoneme mode: bits 8-23 hold the character put between phonemes.
_PHONEME_SEPARATOR_SPACE = ord(" ") << 8

RATE_RANGE = (80, 450)  # words per minute espeak-ng accepts
PITCH_RANGE = (0, 99)  # espeak-ng's base pitch scale (50 = the voice's own pitch)


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # samples produced before the event
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class PhonemeEvent:
    """One phoneme as espeak-ng spoke it.

    Attributes:
        phoneme: espeak-ng's mnemonic (e.g. ``"aI"``, ``"t#"``, ``"_:"`` for a pause).
        sample: position in the synthesized audio where the phoneme starts, in samples at
            :attr:`Espeak.sample_rate`.
    """

    phoneme: str
    sample: int


@dataclass(frozen=True)
class WordEvent:
    """One word as espeak-ng spoke it.

    Attributes:
        text_position: 1-based character position of the word in the input text.
        length: length of the word in characters.
        sample: position in the synthesized audio where the word starts, in samples.
    """

    text_position: int
    length: int
    sample: int


@dataclass(frozen=True)
class Synthesis:
    """Audio and events of one :meth:`Espeak.synthesize` call.

    Attributes:
        audio: (N,) int16 samples at ``sample_rate``.
        sample_rate: espeak-ng's output rate (22050 Hz).
        phonemes: phoneme events in time order.
        words: word events in time order.
    """

    audio: np.ndarray
    sample_rate: int
    phonemes: tuple[PhonemeEvent, ...]
    words: tuple[WordEvent, ...]


def _load_library() -> tuple[ctypes.CDLL, str]:
    try:
        import espeakng_loader
    except ImportError as err:
        raise BackendUnavailableError(
            "espeak-ng is needed to synthesize the corpus but the espeakng-loader package is "
            "missing: run `pip install 'espeakng-loader>=0.2.4,<0.3'`"
        ) from err
    lib_path = espeakng_loader.get_library_path()
    data_path = espeakng_loader.get_data_path()
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError as err:
        raise BackendUnavailableError(
            f"could not load libespeak-ng from {lib_path} ({err}): reinstall espeakng-loader "
            "(`pip install --force-reinstall espeakng-loader`)"
        ) from err
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [
        ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int,
    ]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    return lib, str(data_path)


def espeak_data_path() -> Path:
    """Directory of the espeak-ng data shipped by ``espeakng-loader`` (voices, dictionaries).

    Raises:
        BackendUnavailableError: espeakng-loader is not installed.
    """
    return Path(_load_library()[1])


def _overlay(data: Path) -> Path:
    """A temp copy of the data directory ``data`` made of symlinks, with real ``voices/!v``
    folder (removed at exit); returns its ``espeak-ng-data``."""
    root = Path(tempfile.mkdtemp(prefix="seqkit-espeak-"))
    atexit.register(shutil.rmtree, root, True)
    out = root / "espeak-ng-data"
    for parent in (data, data / "voices", data / "voices" / "!v"):
        target = out / parent.relative_to(data)
        target.mkdir(parents=True, exist_ok=True)
        for entry in parent.iterdir():
            if entry.name not in ("voices", "!v") or entry.parent == data / "voices" / "!v":
                (target / entry.name).symlink_to(entry)
    return out


_VARIANT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class Espeak:
    """The espeak-ng engine of this process, set up to report phoneme and word events.

    espeak-ng is a process-wide singleton: every instance in one process shares the library's
    state, so use one instance per process (each multiprocessing worker makes its own).

    Raises:
        BackendUnavailableError: the library or its data cannot be loaded.
    """

    _lib: ctypes.CDLL | None = None
    _data: Path
    sample_rate: int

    def __init__(self) -> None:
        if Espeak._lib is None:
            lib, data_path = _load_library()
            Espeak._data = _overlay(Path(data_path))
            # espeak_Initialize takes the directory that *contains* espeak-ng-data.
            parent = str(Espeak._data.parent).encode()
            rate = lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, parent,
                _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT,
            )
            if rate <= 0:
                raise BackendUnavailableError(
                    f"espeak-ng failed to initialize with data in {data_path} (returned {rate}): "
                    "reinstall espeakng-loader"
                )
            Espeak._lib = lib
            Espeak._rate = rate
        self.sample_rate = Espeak._rate
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[PhonemeEvent] = []
        self._words: list[WordEvent] = []
        # Keep a reference: ctypes frees the trampoline when the Python object dies.
        self._callback = _SynthCallback(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)

    @property
    def version(self) -> str:
        """espeak-ng's version string, e.g. ``"1.52-dev"``."""
        return self._lib.espeak_Info(None).decode()

    def _collect(self, wav: ctypes.Array, num_samples: int, events: ctypes.Array) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._phonemes.append(PhonemeEvent(name, ev.sample))
            elif ev.type == _EVENT_WORD:
                self._words.append(WordEvent(ev.text_position, ev.length, ev.sample))
            i += 1
        return 0  # 0: go on synthesizing

    def seed_random(self, seed: int) -> None:
        """Seed espeak-ng's own random generator (it jitters phoneme timing and voicing).

        espeak-ng also keeps synthesis state between calls (e.g. the pitch flutter phase), so a
        seeded engine repeats itself only when it also synthesizes the same sequence of
        utterances since it was created, in a fresh process.
        """
        self._lib.espeak_ng_SetRandSeed(seed & 0x7FFFFFFF)

    def variant_text(self, name: str) -> str:
        """The text of voice variant ``name`` (a file of ``voices/!v``).

        Raises:
            ConfigError: there is no such variant.
        """
        path = Espeak._data / "voices" / "!v" / name
        if not _VARIANT_NAME.match(name) or not path.is_file():
            raise ConfigError(f"espeak-ng has no voice variant {name!r} in {path.parent}")
        return path.read_text(encoding="utf-8", errors="replace")

    def define_variant(self, name: str, text: str) -> None:
        """Add (or replace) voice variant ``name`` with the lines ``text`` (espeak-ng's voice
        file syntax: ``formant``, ``klatt``, ``flutter``, ``breath``, ...) for this process.

        Raises:
            ConfigError: ``name`` is not letters, digits, ``_`` and ``-``.
        """
        if not _VARIANT_NAME.match(name):
            raise ConfigError(f"voice variant name {name!r}: expected letters, digits, _ and -")
        path = Espeak._data / "voices" / "!v" / name
        if path.is_symlink():
            path.unlink()
        path.write_text(text, encoding="utf-8")

    def set_voice(self, name: str) -> None:
        """Select a voice by name, optionally with a variant: ``"en-us"``, ``"en-gb-scotland+f3"``.

        Raises:
            ConfigError: espeak-ng has no such voice or variant.
        """
        if self._lib.espeak_SetVoiceByName(name.encode()) != _EE_OK:
            raise ConfigError(
                f"espeak-ng has no voice {name!r}: expected a language such as 'en-us' with an "
                f"optional '+variant' from {espeak_data_path() / 'voices' / '!v'}"
            )

    def set_prosody(
        self, *, rate: int = 175, pitch: int = 50, pitch_range: int = 50, word_gap: int = 0
    ) -> None:
        """Set speaking rate (words per minute), base pitch and pitch range (0-99), word gap.

        Raises:
            ConfigError: a value is outside what espeak-ng accepts.
        """
        checks = (("rate", rate, RATE_RANGE), ("pitch", pitch, PITCH_RANGE),
                  ("pitch_range", pitch_range, PITCH_RANGE), ("word_gap", word_gap, (0, 100)))
        for label, value, (low, high) in checks:
            if not low <= value <= high:
                raise ConfigError(f"espeak {label} must be in [{low}, {high}], found {value}")
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch),
                             (_PARAM_RANGE, pitch_range), (_PARAM_WORDGAP, word_gap),
                             (_PARAM_VOLUME, 100)):
            self._lib.espeak_SetParameter(param, value, 0)

    def text_to_phonemes(self, text: str) -> list[list[str]]:
        """espeak-ng's letter-to-sound (and dictionary) phonemes of ``text``, without speaking it.

        Used for words a pronunciation dictionary lacks: the mnemonics are the same as those of
        the phoneme events, so :func:`seqkit.synth.espeak_phones.timit_phones` maps them.

        Args:
            text: plain UTF-8 text, in the current voice's language.

        Returns:
            One list of mnemonics per word, stress marks kept (``[["h", "@", "l", "'oU"]]``).
        """
        buffer = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        words: list[list[str]] = []
        # espeak-ng consumes one clause per call and advances the pointer (NULL at the end).
        # Phoneme mode: ASCII mnemonics, a space between phonemes (two between words).
        while pointer.value:
            clause = self._lib.espeak_TextToPhonemes(
                ctypes.byref(pointer), _CHARS_UTF8, _PHONEME_SEPARATOR_SPACE
            )
            for word in (clause or b"").decode("utf-8", "replace").split("  "):
                if word.strip():
                    words.append(word.split())
        return words

    def synthesize(self, text: str) -> Synthesis:
        """Speak ``text`` with the current voice and prosody and return audio plus events.

        Args:
            text: plain UTF-8 text (no SSML).

        Returns:
            The int16 audio at :attr:`sample_rate` and the phoneme and word events.

        Raises:
            BackendUnavailableError: espeak-ng reported an error while synthesizing.
        """
        self._chunks, self._phonemes, self._words = [], [], []
        self._lib.espeak_SetSynthCallback(self._callback)
        data = text.encode("utf-8") + b"\0"
        status = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                        None, None)
        if status != _EE_OK:
            raise BackendUnavailableError(f"espeak-ng failed to synthesize {text!r} "
                                          f"(error {status})")
        self._lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return Synthesis(audio, self.sample_rate, tuple(self._phonemes), tuple(self._words))
