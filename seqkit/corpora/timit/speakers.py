"""The standard TIMIT evaluation speakers: the 24-speaker core test set and the 50-speaker dev set.

Facts from the TIMIT documentation (testset.doc / readme.doc Table 3) and the lists the Kaldi,
SpeechBrain and lhotse TIMIT recipes share. Both sets are drawn from TIMIT's TEST/ part and are
disjoint. Speaker ids are written upper case here (``<sex><initials><digit>``); corpora spell
them in either case, so compare with :func:`normalize_speaker`.

The SA sentences (read by every speaker) are excluded from training and both evaluation sets.
"""

from __future__ import annotations

# Core test: two male and one female speaker per dialect region.
CORE_TEST_BY_DIALECT: dict[str, tuple[str, str, str]] = {
    "DR1": ("MDAB0", "MWBT0", "FELC0"),
    "DR2": ("MTAS1", "MWEW0", "FPAS0"),
    "DR3": ("MJMP0", "MLNT0", "FPKT0"),
    "DR4": ("MLLL0", "MTLS0", "FJLM0"),
    "DR5": ("MBPM0", "MKLT0", "FNLP0"),
    "DR6": ("MCMJ0", "MJDH0", "FMGD0"),
    "DR7": ("MGRT0", "MNJM0", "FDHC0"),
    "DR8": ("MJLN0", "MPAM0", "FMLD0"),
}

# Dev set: the 50 speakers of Kaldi's dev_spk.list (also SpeechBrain's and lhotse's), by sex.
_DEV_FEMALE = (
    "FADG0 FAKS0 FCAL1 FCMH0 FDAC1 FDMS0 FDRW0 FEDW0 FGJD0 FJEM0 FJMG0 FJSJ0 FKMS0 FMAH0 "
    "FMML0 FNMR0 FREW0 FSEM0"
)
_DEV_MALE = (
    "MAJC0 MBDG0 MBNS0 MBWM0 MCSH0 MDLF0 MDLS0 MDVC0 MERS0 MGJF0 MGLB0 MGWT0 MJAR0 MJFC0 "
    "MJSW0 MMDB1 MMDM2 MMJR0 MMWH0 MPDF0 MRCS0 MREB0 MRJM4 MRJR0 MROA0 MRTK0 MRWS1 MTAA0 "
    "MTDT0 MTEB0 MTHC0 MWJG0"
)

CORE_TEST_SPEAKERS: frozenset[str] = frozenset(
    spk for trio in CORE_TEST_BY_DIALECT.values() for spk in trio
)
DEV_SPEAKERS: frozenset[str] = frozenset((_DEV_FEMALE + " " + _DEV_MALE).split())

# Sentence-id prefix of the dialect sentences, excluded from every split.
DIALECT_SENTENCE_PREFIX = "SA"


def normalize_speaker(speaker: str) -> str:
    """A speaker id in the form used by seqkit's manifests and lists (upper case)."""
    return speaker.strip().upper()
