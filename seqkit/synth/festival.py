"""festival's US English voices, made from recordings of people, driven by TIMIT phones.

festival speaks from words, so each phrase (the phones between two pauses) becomes one word of
its own whose lexicon entry is exactly those phones, syllabified here by maximal onset
(:func:`syllabify`) with full vowels stressed and reduced ones (``ax``, and what stands for
``ix``, ``axr``, the syllabic consonants) not. The voice's own duration and intonation models
then time and pitch it as speech; festival's vowel reduction and post-lexical rules are switched
off so that it says the phones it was given. One festival process per engine (``festival
--pipe``) reads a Scheme program per sentence on stdin: starting festival costs ~0.3 s of CPU,
more than synthesizing a sentence with a diphone voice (measured on 20 sentences, wall-clock
real-time factor 0.29 -> 0.026 for kal, 0.50 -> 0.10 for slt). Each program selects its voice
afresh and uses only names it sets, so a sentence sounds the same whatever was said before it
(tested against a fresh process). Its voices:

* ``kal``: diphone voice of a US male (Kevin Lenzo, as flite's kal16), 16 kHz.
* ``ked``: diphone voice of a US male (Kurt Dusterhoff), 16 kHz.
* ``slt``: HTS (statistical parametric) voice of the CMU ARCTIC US female, 32 kHz.

All three speak the CMU phones (``ked`` also has a flap ``dx``); TIMIT's allophones become the
nearest of them as in :data:`~seqkit.synth.phone_maps.CMU_SUBSTITUTES`. The diphone voices
rename a phone themselves: kal says ``ah`` with its ``aa`` diphones and ked with its ``ax`` ones,
so those are the phones asked and labelled. Where a diphone voice lacks a diphone it *silently*
says ``ax-ax`` (kal) or ``pau-pau`` (ked) instead: the pairs it lacks are read from its diphone
index (after the renaming its diphone-naming rules do) and, unless the voice lists a repair
(kal: ``hh``/``w``/``y`` + ``er`` said ``ax r``; ked: ``ih``/``uh`` before a vowel said
``iy``/``uw``), refused before synthesis; festival's note about a default diphone is refused
after. ked says ``er`` as ``er`` + ``r``
diphones and reports the extra ``r``: it is folded back into the ``er``.

Origin and licence: festival 2.5 is from the University of Edinburgh's Centre for Speech
Technology Research with Carnegie Mellon University, under a free X11-style licence; the kal and
ked diphone databases (OGI / CSTR) and the HTS slt voice (CMU ARCTIC, HTS working group) are free
to use, modify and distribute with their copyright notices. Debian packages ``festival``,
``festvox-kallpc16k``, ``festvox-kdlpc16k``, ``festvox-us-slt-hts``.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from seqkit.errors import BackendUnavailableError, ConfigError, CorpusError
from seqkit.synth.phone_maps import (
    CMU_PHONES,
    CMU_SUBSTITUTES,
    PAUSE,
    REDUCED_PHONES,
    PhoneMap,
    spoken_from_ends,
)
from seqkit.synth.programs import TIMEOUT_S, check_prosody, read_wave, require_program
from seqkit.synth.voices import Spoken, VoiceError

VOICE_DIR = Path("/usr/share/festival/voices")  # where Debian's festvox packages put voices
# Vowels of festival's "radio" phone set that we may ask for (syllable nuclei).
_VOWELS = frozenset("aa ae ah ao aw ax ay eh er ey ih iy ow oy uh uw".split())
# What festival writes on stderr when a diphone voice falls back to its default diphone.
_DEFAULT_DIPHONE = re.compile(r"using default diphone (\S+) for (\S+)")


@dataclass(frozen=True)
class FestivalVoice:
    """One festival voice and how it is asked for phones.

    Attributes:
        scheme: the Scheme function that selects it.
        package: the Debian package that installs it.
        directory: its folder under :data:`VOICE_DIR`.
        renamed: phone -> the phone whose units the voice's diphone rules use for it.
        inserted: phone -> a phone the voice adds after it in its segments (folded back).
        index: the diphone index under ``directory`` (None: not a diphone voice).
        extra_phones: phones the voice has beyond the CMU set.
        f0: whether it follows a mean pitch (``int_lr_params``'s ``target_f0_mean``).
        repairs: missing pair -> what to say instead (:attr:`PhoneMap.repairs`).
    """

    scheme: str
    package: str
    directory: str
    renamed: Mapping[str, str]
    inserted: Mapping[str, str]
    index: str | None
    extra_phones: frozenset[str] = frozenset()
    f0: bool = True
    repairs: Mapping[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict
    )


FESTIVAL_VOICES: dict[str, FestivalVoice] = {
    # kal has no hh-er, w-er, y-er ("her", "were", "your": one sentence in eight): said [ər].
    "kal": FestivalVoice("voice_kal_diphone", "festvox-kallpc16k", "english/kal_diphone",
                         {"ah": "aa"}, {}, "group/kallpc16k.group",
                         repairs={(glide, "er"): ((glide,), ("ax", "r"))
                                  for glide in ("hh", "w", "y")}),
    # ked has no ih or uh before a vowel ("the other" as dh ih ah, "to each" as t uh iy ch):
    # said iy and uw, as in "thee other", "too each".
    "ked": FestivalVoice("voice_ked_diphone", "festvox-kdlpc16k", "english/ked_diphone",
                         {"ah": "ax"}, {"er": "r"}, "group/kedlpc16k.group", frozenset({"dx"}),
                         repairs={(lax, vowel): ((tense,), (vowel,)) for vowel in _VOWELS
                                  for lax, tense in (("ih", "iy"), ("uh", "uw"))}),
    "slt": FestivalVoice("voice_cmu_us_slt_arctic_hts", "festvox-us-slt-hts",
                         "us/cmu_us_slt_arctic_hts", {}, {}, None, f0=False),
}


def read_diphone_index(path: Path) -> frozenset[str]:
    """The diphone names (``"aa-b"``) of a festvox grouped index (an EST header, then one
    ``name start end mid`` line per diphone, then the signal data)."""
    names: set[str] = set()
    with path.open("rb") as f:
        header = {}
        for line in f:
            if line.startswith(b"EST_Header_End"):
                break
            key, _, value = line.decode("latin-1").partition(" ")
            header[key] = value.strip()
        for _ in range(int(header.get("NumEntries", "0"))):
            names.add(f.readline().split(b" ", 1)[0].decode("latin-1"))
    return frozenset(names)


def missing_pairs(
    phones: frozenset[str], diphones: frozenset[str], voice: FestivalVoice
) -> frozenset[tuple[str, str]]:
    """Phone pairs whose diphone, named as the voice's rules name it, is not in ``diphones``.

    The rules that matter without word context: an inserted phone is the left side of the
    next diphone (ked's ``er`` ends in ``r``), and ked says ``ch``/``jh`` after a vowel with a
    vowel-``t`` diphone.
    """
    def name(left: str, right: str) -> str:
        left = voice.inserted.get(left, left)
        if voice.scheme == "voice_ked_diphone" and right in ("ch", "jh") and left in _VOWELS:
            right = "t"
        return f"{left}-{right}"

    def present(left: str, right: str) -> bool:
        # A pair inside a consonant cluster of one syllable may exist only under the names the
        # cluster rules give it ("hh_-_y" in "huge"): festival's syllabification decides, and a
        # pair it then lacks is caught by its own note about a default diphone.
        base = name(left, right)
        left_name, right_name = base.split("-")
        return any(f"{x}-{y}" in diphones for x in (left_name, f"{left_name}_")
                   for y in (right_name, f"_{right_name}", f"${right_name}"))

    return frozenset((a, b) for a in phones for b in phones if not present(a, b))


@cache
def phone_map(voice: str) -> PhoneMap:
    """The phone map of festival voice ``voice``, pairs read from its installed index.

    Raises:
        BackendUnavailableError: the voice's package is not installed.
    """
    spec = FESTIVAL_VOICES[voice]
    directory = VOICE_DIR / spec.directory
    if not directory.is_dir():
        raise BackendUnavailableError(f"festival voice {voice} is not installed: install the "
                                      f"Debian package (`sudo apt-get install {spec.package}`)")
    phones = (CMU_PHONES | spec.extra_phones) - set(spec.renamed)
    substitutes = {**CMU_SUBSTITUTES, **{p: (r,) for p, r in spec.renamed.items()}}
    if "dx" in spec.extra_phones:
        del substitutes["dx"]
    lacking: frozenset[tuple[str, str]] = frozenset()
    if spec.index is not None:
        lacking = missing_pairs(phones, read_diphone_index(directory / spec.index), spec)
    return PhoneMap(f"festival {voice}", frozenset(phones), substitutes, lacking, spec.repairs)


class FestivalEngine:
    """festival's voices, speaking TIMIT phones (see the module docstring).

    Raises:
        BackendUnavailableError: festival is not installed (on construction).
    """

    name = "festival"
    voices: tuple[str, ...] = tuple(FESTIVAL_VOICES)

    def __init__(self) -> None:
        self._session = FestivalSession(require_program("festival", "festival"))

    def close(self) -> None:
        """Stop this engine's festival process (a later :meth:`speak` starts another)."""
        self._session.close()

    def __enter__(self) -> FestivalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def speak(
        self, phones: Sequence[str], voice: str, *, rate: float = 1.0,
        f0_mean: float | None = None,
    ) -> Spoken:
        """Say ``phones`` (TIMIT-61, no closures, ``pau`` between phrases) with ``voice``.

        Args:
            phones: the pronunciation; each phone is said as :func:`phone_map` maps it, and the
                labels are the phones said.
            voice: one of :attr:`voices`.
            rate: speaking rate relative to the voice's own (festival's ``Duration_Stretch``
                divided by it; HTS's speed ``-r``).
            f0_mean: the mean pitch in Hz, None for the voice's own (kal and ked only).

        Returns:
            float32 audio at the voice's rate (16 kHz, slt 32 kHz) and its segments, ``h#`` at
            both ends.

        Raises:
            VoiceError: an unknown voice, a phone without mapping, a phone pair the voice lacks,
                or a diphone festival replaced with its default.
            ConfigError: ``rate`` or ``f0_mean`` out of range, or ``f0_mean`` for slt.
            BackendUnavailableError: the voice's package is not installed.
        """
        where = f"festival {voice}"
        if voice not in FESTIVAL_VOICES:
            raise VoiceError(f"festival has no voice {voice!r}: choose one of "
                             f"{', '.join(FESTIVAL_VOICES)}")
        spec = FESTIVAL_VOICES[voice]
        check_prosody(rate, f0_mean, where)
        if f0_mean is not None and not spec.f0:
            raise ConfigError(f"{where} does not take f0_mean: give it only for "
                              f"{', '.join(v for v, s in FESTIVAL_VOICES.items() if s.f0)}")
        plan = phone_map(voice).apply(phones)
        with tempfile.TemporaryDirectory(prefix="seqkit-festival-") as tmp:
            wave = Path(tmp) / "out.wav"
            out = self._session.run(_scheme(spec, plan, wave, rate=rate, f0_mean=f0_mean),
                                    where)
            if found := _DEFAULT_DIPHONE.search(out):
                raise VoiceError(f"{where} lacks the diphone {found[2]} (festival would say "
                                 f"{found[1]} there): use another voice for this sentence")
            audio, sample_rate = read_wave(wave, where)
        labels, ends = _segments(out, spec, where)
        said = [s for s, _ in plan]
        if labels != said:
            raise CorpusError(f"{where} said {' '.join(labels)!r} for {' '.join(said)!r}")
        return spoken_from_ends(audio, sample_rate, labels, ends, where)


def _scheme(
    spec: FestivalVoice, plan: Sequence[tuple[str, str]], wave: Path, *, rate: float,
    f0_mean: float | None,
) -> str:
    """The Scheme program that says ``plan`` (``(said, asked)``, pauses at both ends) with
    ``spec``'s voice, writes ``wave`` and prints each segment's name and end time."""
    lines = [
        "(set! seqkit_utt nil)",  # a failed synthesis must not save the last sentence again
        f"({spec.scheme})",
        # Say the phones given: no vowel reduction, no post-lexical rules; a phrase break after
        # every word, since every word is a phrase.
        "(set! postlex_vowel_reduce_cart_tree nil)",
        "(set! postlex_rules_hooks nil)",
        "(Parameter.set 'Phrase_Method 'cart_tree)",
        "(set! phrase_cart_tree '((B)))",
    ]
    if spec.index is None:  # HTS: its own speed factor
        lines.append(f"(set! hts_engine_params (append hts_engine_params "
                     f"(list (list \"-r\" {rate:.6g}))))")
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch "
                     f"(/ (Parameter.get 'Duration_Stretch) {rate:.6g}))")
    if f0_mean is not None:
        lines.append(f"(set! int_lr_params (cons (list 'target_f0_mean {f0_mean:.6g}) "
                     "int_lr_params))")
    words = []
    for i, phrase in enumerate(_phrases(plan)):
        pron = " ".join(f"(({' '.join(phones)}) {stress})" for phones, stress in syllabify(phrase))
        words.append(f"seqkit{i}")
        lines.append(f"(lex.add.entry '(\"seqkit{i}\" nil ({pron})))")
    lines += [
        f"(set! seqkit_utt (utt.synth (Utterance Words ({' '.join(words)}))))",
        f"(utt.save.wave seqkit_utt \"{wave}\" 'riff)",
        "(mapcar (lambda (s) (format t \"seqkit-segment %s %f\\n\" (item.name s) "
        "(item.feat s \"end\"))) (utt.relation.items seqkit_utt 'Segment))",
    ]
    return "\n".join(lines) + "\n"


# English syllable onsets of more than one consonant (Giegerich 1992, with /hj/ of "huge").
_ONSETS = frozenset(tuple(o.split()) for o in (
    "p r", "b r", "t r", "d r", "k r", "g r", "f r", "th r", "sh r",
    "p l", "b l", "k l", "g l", "f l", "s l",
    "s p", "s t", "s k", "s m", "s n", "s f",
    "t w", "d w", "k w", "g w", "s w", "th w", "hh w",
    "p y", "b y", "k y", "g y", "f y", "v y", "m y", "n y", "hh y", "l y",
    "s p r", "s t r", "s k r", "s p l", "s k l", "s k w", "s p y", "s k y",
))


def syllabify(phrase: Sequence[tuple[str, str]]) -> list[tuple[tuple[str, ...], int]]:
    """Syllables of a phrase by maximal onset, each with its stress (0 reduced, 1 full).

    festival's own syllabifier leaves a consonant before a vowel in the coda ("sh iy hh . ae
    d"), which then gets the wrong diphone names in a cluster and the wrong durations.

    Args:
        phrase: ``(said, asked)`` per phone, no pauses.

    Returns:
        ``(phones, stress)`` per syllable; a phrase without vowels is one unstressed syllable.
    """
    nuclei = [i for i, (said, _) in enumerate(phrase) if said in _VOWELS]
    if not nuclei:
        return [(tuple(said for said, _ in phrase), 0)]
    starts = [0]
    for before, after in zip(nuclei, nuclei[1:], strict=False):
        cluster = tuple(said for said, _ in phrase[before + 1:after])
        onset = next((k for k in range(len(cluster), 1, -1) if cluster[-k:] in _ONSETS),
                     1 if cluster and cluster[-1] != "ng" else 0)
        starts.append(after - onset)
    ends = [*starts[1:], len(phrase)]
    syllables = []
    for start, end, nucleus in zip(starts, ends, nuclei, strict=True):
        said, asked = phrase[nucleus]
        stress = 0 if said == "ax" or asked in REDUCED_PHONES else 1
        syllables.append((tuple(p for p, _ in phrase[start:end]), stress))
    return syllables


def _phrases(plan: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The runs of phones between pauses."""
    phrases: list[list[tuple[str, str]]] = [[]]
    for said, asked in plan:
        if said == PAUSE:
            phrases.append([])
        else:
            phrases[-1].append((said, asked))
    return [p for p in phrases if p]


def _segments(out: str, spec: FestivalVoice, where: str) -> tuple[list[str], list[float]]:
    """Segment names and end times festival printed, a phone the voice inserted folded back
    into the phone before it."""
    labels: list[str] = []
    ends: list[float] = []
    pending = False  # the last phone is one the voice inserts after, not yet seen
    for line in out.splitlines():
        if not line.startswith("seqkit-segment "):
            continue
        _, label, end = line.split()
        if pending and label == spec.inserted[labels[-1]]:
            ends[-1] = float(end)
            pending = False
            continue
        labels.append(label)
        ends.append(float(end))
        pending = label in spec.inserted
    if not labels:
        raise CorpusError(f"{where}: festival printed no segments ({out.strip()[-200:]!r})")
    return labels, ends


class FestivalSession:
    """One ``festival --pipe`` process that runs Scheme programs one after another.

    Each program's output (stdout and stderr together) ends at a numbered marker line it prints
    and flushes last; a program that runs past :data:`~seqkit.synth.programs.TIMEOUT_S` or a
    process that dies is killed and replaced on the next call.
    """

    def __init__(self, program: str) -> None:
        self._program = program
        self._process: subprocess.Popen[bytes] | None = None
        self._count = 0

    def run(self, scheme: str, where: str) -> str:
        """Run ``scheme`` and return what festival wrote while running it.

        Raises:
            BackendUnavailableError: festival died or did not finish in time.
        """
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [self._program, "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        self._count += 1
        marker = f"seqkit-done {self._count}"
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:  # Popen made both pipes above
            raise BackendUnavailableError(f"{where}: no pipe to festival")
        try:
            stdin.write(f'{scheme}(format t "{marker}\\n")\n(fflush nil)\n'.encode())
            stdin.flush()
            out = _read_until(stdout.fileno(), f"{marker}\n".encode(),
                              time.monotonic() + TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            self.close()
            raise BackendUnavailableError(f"{where}: festival failed or hung ({err}); run "
                                          "`festival --pipe` by hand to see why") from err
        return out.decode("utf-8", "replace")

    def close(self) -> None:
        """Stop the process, if any."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._process = None

    def __del__(self) -> None:
        self.close()


def _read_until(fd: int, marker: bytes, deadline: float) -> bytes:
    """Bytes from ``fd`` up to the line ``marker`` (left out), waiting until ``deadline``."""
    data = b""
    while not (data.startswith(marker) or b"\n" + marker in data):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"no end of output in {TIMEOUT_S:.0f} s")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise OSError("festival exited")
        data += chunk
    return data[:data.rindex(marker)]
