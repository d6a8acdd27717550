"""The authors' released CMs: where they live and what they are.

Files are those of github.com/xieyuankun/Codecfake (branch main), ``pretrained_model/<name>/
anti-spoofing_feat_model.pt``; the sums are pinned so that a download is verified before import.
The W2V2-LCNN checkpoints are published too but are not pinned here (nobody could verify them yet).
"""

from __future__ import annotations

from dataclasses import dataclass

RELEASE_URL = "https://github.com/xieyuankun/Codecfake/raw/main/pretrained_model"
CHECKPOINT_FILE = "anti-spoofing_feat_model.pt"


@dataclass(frozen=True)
class Release:
    name: str
    architecture: str
    trained_on: str
    sha256: str


RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        Release("codec_mellcnn", "mel_lcnn", "Codecfake",
                "d8b240a5d50782cf39780bb0ed4c75652cc405fb7aa0aeb1b433bf38faba5f43"),
        Release("vocoder_mellcnn", "mel_lcnn", "ASVspoof2019 LA",
                "330c1993860c4141d0aa9a2818718d238240908e324b5cdda9756f0122011431"),
        Release("codec_w2v2aasist", "w2v2_aasist", "Codecfake",
                "5a606d1fbd578dbd214471cead283c236f4204c54d602e945924b3594f8c25a3"),
        Release("vocoder_w2v2aasist", "w2v2_aasist", "ASVspoof2019 LA",
                "02a002ff2c9162d164316aa372feb57525cbd572f1689735500320ceff1f3caa"),
        Release("cotrain_w2v2aasist_CSAM", "w2v2_aasist", "ASVspoof2019 LA + Codecfake (CSAM)",
                "86876e2c0eb98d6e60ecf2f1139112206adf47b1562aee72530d0c22e04c644a"),
    )
}
