"""Synthetic Arabic articles: distinct, reproducible texts from a seed."""

from __future__ import annotations

import random

WORDS = [
    "الحكومة",
    "أعلنت",
    "اليوم",
    "عن",
    "خطة",
    "جديدة",
    "لتطوير",
    "البنية",
    "التحتية",
    "في",
    "المدن",
    "الكبرى",
    "وتشمل",
    "الطرق",
    "والجسور",
    "والمدارس",
    "والمستشفيات",
    "ومحطات",
    "المياه",
    "والكهرباء",
    "وشبكات",
    "النقل",
    "العام",
    "والاتصالات",
    "كما",
    "أكد",
    "الوزير",
    "أن",
    "المشروع",
    "سيوفر",
    "آلاف",
    "الوظائف",
    "للشباب",
    "خلال",
    "السنوات",
    "الخمس",
    "المقبلة",
]


def article(seed: int, words: int = 120) -> str:
    rng = random.Random(seed)
    sentences = []
    for _ in range(words // 12):
        sentences.append(
            " ".join(rng.choice(WORDS) for _ in range(12)) + f" {rng.randrange(10**6)}."
        )
    return "\n\n".join(sentences)
