"""The speakers of the synthesized corpus: who they are and which split hears them.

A speaker is an English accent (the dialect region, see
:data:`seqkit.data.espeak_phones.ACCENTS`) + an espeak-ng voice variant + its own rate, pitch
and pitch range. Train, dev and test speakers draw their variants from disjoint pools, so dev and
test measure generalization to unseen voices. The plan depends only on the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from seqkit.data.espeak_phones import ACCENTS
from seqkit.errors import ConfigError

SPLITS = ("train", "dev", "test")

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
            letters = "".join(rng.choice("ABCDEFGHIJKLMNOPRSTW") for _ in range(3))
            digit = 0
            while f"{sex}{letters}{digit}" in used_ids:
                digit += 1
            speaker_id = f"{sex}{letters}{digit}"
            used_ids.add(speaker_id)
            speakers.append(Speaker(
                id=speaker_id, split=split, region=accent.region, accent=accent.voice,
                variant=variant, sex=sex, rate=rng.randint(145, 195), pitch=rng.randint(30, 70),
                pitch_range=rng.randint(30, 80),
            ))
    return speakers
