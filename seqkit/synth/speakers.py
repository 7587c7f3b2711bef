"""The speakers of the synthesized corpus: who they are and which split hears them.

A speaker is an English accent (the dialect region, see
:data:`seqkit.synth.espeak_phones.ACCENTS`) + an espeak-ng voice variant + its own rate, pitch
and pitch range + its own voice quality on top of the variant (:func:`voice_text`). Train,
dev and test speakers draw their variants from disjoint pools, so dev and test measure
generalization to unseen voices. The plan depends only on the seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from seqkit.data.splits import SPLITS
from seqkit.errors import ConfigError
from seqkit.synth.espeak_phones import ACCENTS

# Share of speakers (and of voice variants) held out for test and dev.
_TEST_SHARE = 0.2
_DEV_SHARE = 0.125

# espeak-ng voice variants (espeak-ng-data/voices/!v) that sound like a human speaker, with the
# sex TIMIT's speaker id needs (from the variant's `gender` line, or its pitch when it has none).
# Left out: robots, whisper, croak, novelty and Klatt-synthesizer variants.
VOICE_VARIANTS: tuple[tuple[str, str], ...] = (
    ("Alicia", "F"), ("Andrea", "F"), ("Annie", "F"), ("anika", "F"), ("aunty", "F"),
    ("belinda", "F"), ("f1", "F"), ("f2", "F"), ("f3", "F"), ("f4", "F"), ("f5", "F"),
    ("grandma", "F"), ("linda", "F"), ("shelby", "F"), ("steph", "F"), ("steph2", "F"),
    ("steph3", "F"),
    ("Alex", "M"), ("Andy", "M"), ("AnxiousAndy", "M"), ("Denis", "M"), ("Diogo", "M"),
    ("Gene", "M"), ("Gene2", "M"), ("Henrique", "M"), ("Hugo", "M"), ("Jacky", "M"),
    ("Lee", "M"), ("Marco", "M"), ("Mario", "M"), ("Michael", "M"), ("Mike", "M"),
    ("Nguyen", "M"), ("Storm", "M"), ("antonio", "M"), ("boris", "M"), ("grandpa", "M"),
    ("gustave", "M"), ("iven", "M"), ("iven2", "M"), ("iven3", "M"), ("iven4", "M"),
    ("kaukovalta", "M"), ("m1", "M"), ("m2", "M"), ("m3", "M"), ("m4", "M"), ("m5", "M"),
    ("m6", "M"), ("m7", "M"), ("m8", "M"), ("marcelo", "M"), ("max", "M"), ("michel", "M"),
    ("miguel", "M"), ("paul", "M"), ("pedro", "M"), ("quincy", "M"), ("rob", "M"),
    ("robert", "M"), ("sandro", "M"), ("travis", "M"), ("victor", "M"),
)


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker.

    Attributes:
        id: TIMIT-style id: sex + 3 letters + digit, e.g. ``"FKLM0"``.
        split: ``"train"``, ``"dev"`` or ``"test"``.
        region: dialect region directory, ``"DR1"`` .. ``"DR8"``.
        accent: espeak-ng voice of the accent, e.g. ``"en-gb-scotland"``.
        variant: espeak-ng voice variant, e.g. ``"f3"``.
        sex: ``"M"`` or ``"F"``.
        rate: base speaking rate in words per minute.
        pitch: base pitch on espeak-ng's 0-99 scale.
        pitch_range: pitch range on espeak-ng's 0-99 scale.
        klatt: espeak-ng's Klatt voicing source 1-6, or 0 for its own (harmonic) synthesizer.
        tract: factor on the variant's formant frequencies F1-F5 (a vocal tract that much
            shorter), 1 = the variant's own.
        flutter: pitch jitter in espeak-ng's ``flutter`` units (0-8), -1 = the variant's own.
        roughness: shimmer-like amplitude roughness (``roughness``, 0-7), -1 = the variant's.
        breath: breathiness (aspiration noise) level 0-10, 0 = the variant's own.
        consonants: loudness of consonants relative to vowels in percent.
        engine: the voice engine (:mod:`seqkit.synth.engines`); for an engine other than
            espeak-ng, ``variant`` is its voice, ``accent`` the pronunciation's, ``rate / 170``
            the voice's relative rate, and the espeak-only fields keep their defaults.
    """

    id: str
    split: str
    region: str
    accent: str
    variant: str
    sex: str
    rate: int
    pitch: int
    pitch_range: int
    klatt: int = 0
    tract: float = 1.0
    flutter: int = -1
    roughness: int = -1
    breath: int = 0
    consonants: int = 100
    engine: str = "espeak"

    @property
    def voice_lines(self) -> str:
        """What this speaker adds to its espeak-ng variant (formants: see :func:`voice_text`)."""
        lines = [f"consonants {self.consonants} {self.consonants}"]
        if self.klatt:
            lines.append(f"klatt {self.klatt}")
        if self.flutter >= 0:
            lines.append(f"flutter {self.flutter}")
        if self.roughness >= 0:
            lines.append(f"roughness {self.roughness}")
        if self.breath:
            b = self.breath
            lines.append(f"breath 0 {b} {2 * b} {2 * b} {2 * b} {2 * b} {2 * b} {b}")
        return "\n".join(lines) + "\n"


_FORMANT_LINE = re.compile(r"^\s*formant\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", re.MULTILINE)


def voice_text(speaker: Speaker, variant_text: str) -> str:
    """The espeak-ng variant file of ``speaker``: ``variant_text`` (its variant's file) with
    formants F1-F5 scaled by ``tract`` and :attr:`Speaker.voice_lines` after (later lines win)."""
    formants = {int(k): (int(f), int(h), int(w))
                for k, f, h, w in _FORMANT_LINE.findall(variant_text)}
    lines = []
    for k in range(1, 6):
        f, h, w = formants.get(k, (100, 100, 100))
        lines.append(f"formant {k} {round(f * speaker.tract)} {h} {w}")
    return variant_text.rstrip("\n") + "\n" + "\n".join(lines) + "\n" + speaker.voice_lines


def plan_speakers(count: int, seed: int) -> list[Speaker]:
    """``count`` speakers for a seed: ids, splits, accents and voices, disjoint pools per split.

    About 20% of the speakers go to test and 12.5% to dev (at least one each); the voice
    variants of each sex are split the same way, so dev and test voices are never heard in
    training.

    Raises:
        ConfigError: fewer than 3 speakers.
    """
    rng = random.Random(f"speakers-{seed}")
    n_test = max(1, round(count * _TEST_SHARE))
    n_dev = max(1, round(count * _DEV_SHARE))
    n_train = count - n_test - n_dev
    if n_train < 1:
        raise ConfigError(f"--speakers must be at least 3 (one per split), found {count}")
    # Disjoint variant pools per split, separately for each sex so every split has both.
    pools: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for sex in ("F", "M"):
        variants = [v for v in VOICE_VARIANTS if v[1] == sex]
        rng.shuffle(variants)
        k_test = max(1, round(len(variants) * _TEST_SHARE))
        k_dev = max(1, round(len(variants) * _DEV_SHARE))
        pools["test"] += variants[:k_test]
        pools["dev"] += variants[k_test:k_test + k_dev]
        pools["train"] += variants[k_test + k_dev:]
    used_ids: set[str] = set()
    speakers: list[Speaker] = []
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        pool = pools[split]
        rng.shuffle(pool)
        for i in range(n):
            variant, sex = pool[i % len(pool)]
            accent = ACCENTS[(len(speakers) + rng.randrange(len(ACCENTS))) % len(ACCENTS)]
            speaker_id = _new_id(rng, sex, used_ids)
            speakers.append(Speaker(
                id=speaker_id, split=split, region=accent.region, accent=accent.voice,
                variant=variant, sex=sex, rate=rng.randint(145, 195), pitch=rng.randint(30, 70),
                pitch_range=rng.randint(30, 80), **_draw_voice(seed, speaker_id),
            ))
    return speakers


def _draw_voice(seed: int, speaker_id: str) -> dict[str, Any]:
    """A speaker's own voice quality on top of its variant (from its own generator, so adding
    it left every other draw of the plan as it was).

    People differ in vocal tract length (formants +-10% within a sex), in the voicing source
    (half the speakers get one of espeak-ng's Klatt sources, the rest its harmonic one), in pitch
    jitter, shimmer and breathiness, and in how loud their consonants are.
    """
    rng = random.Random(f"voice-{seed}-{speaker_id}")
    return {
        "klatt": rng.randint(1, 6) if rng.random() < 0.5 else 0,
        "tract": round(rng.uniform(0.9, 1.1), 3),
        "flutter": rng.randint(0, 8),
        "roughness": rng.randint(0, 5),
        "breath": rng.choice((0, 0, 2, 4, 6, 8)),
        "consonants": rng.randint(75, 125),
    }


# Speaking rate (espeak-ng words per minute) that a phone-driven voice speaks at its own rate.
ENGINE_BASE_RATE = 170


def plan_voice_speakers(
    voices: list[tuple[str, str, str]], per_voice: int, seed: int, used_ids: set[str]
) -> list[Speaker]:
    """Training speakers made from voices of people: each voice becomes ``per_voice`` speakers.

    A speaker is its voice at its own speaking rate (x0.85-1.15); room, noise and
    per-utterance jitter come from the corpus writer as for every speaker. The voice itself is
    left as its recordings made it: warping it by resampling (x0.92-1.18, formants and pitch
    together) cost 3 points of real-speech PER (docs/real-speech.md). They are all in train:
    dev and test stay on held-out espeak-ng variants.

    Args:
        voices: ``(engine, voice, sex)`` of each voice.
        per_voice: speakers per voice (0: none).
        seed: the corpus seed.
        used_ids: ids taken already (updated).
    """
    rng = random.Random(f"voice-speakers-{seed}")
    speakers = []
    for engine, voice, sex in voices:
        for _ in range(per_voice):
            speaker_id = _new_id(rng, sex, used_ids)
            region = f"DR{rng.randint(1, 8)}"
            speakers.append(Speaker(
                id=speaker_id, split="train", region=region, accent="en-us", variant=voice,
                sex=sex, rate=round(ENGINE_BASE_RATE * rng.uniform(0.85, 1.15)), pitch=50,
                pitch_range=50, engine=engine,
            ))
    return speakers


def _new_id(rng: random.Random, sex: str, used_ids: set[str]) -> str:
    """A TIMIT-style speaker id not in ``used_ids`` (which it joins)."""
    letters = "".join(rng.choice("ABCDEFGHIJKLMNOPRSTW") for _ in range(3))
    digit = 0
    while f"{sex}{letters}{digit}" in used_ids:
        digit += 1
    used_ids.add(f"{sex}{letters}{digit}")
    return f"{sex}{letters}{digit}"

