"""The task table: SwinFace's 43 outputs, their 11 groups and what they mean.

This module is the single source of truth for output names, their order in the
published checkpoint (``output_fcs.0`` .. ``output_fcs.41``), their sizes, their
label order and units. The model, the decoder, the losses, the dataset readers
and the reports all read it; nothing else hard-codes an output.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """How an output is read."""

    BINARY = "binary"  # two logits, [no, yes] (Gender: [female, male])
    CATEGORICAL = "categorical"  # n logits, one per label
    REGRESSION = "regression"  # one value in `unit`
    EMBEDDING = "embedding"  # identity vector, compared by cosine similarity


@dataclass(frozen=True)
class Group:
    """One task group: it owns one channel-attention subnet and one task MLP."""

    index: int
    name: str
    description: str


@dataclass(frozen=True)
class Output:
    """One model output.

    ``name`` is the published name (the key in the reference outputs); ``key``
    is the snake_case identifier used in results and JSON; ``celeba`` is the
    CelebA attribute this output predicts, if any.
    """

    name: str
    key: str
    kind: Kind
    size: int
    group: int | None  # None for the identity embedding, which comes from the backbone
    labels: tuple[str, ...] = ()
    unit: str | None = None
    celeba: str | None = None
    description: str = ""

    @property
    def is_attribute(self) -> bool:
        """True for the 40 outputs that are CelebA attributes."""
        return self.celeba is not None


GROUPS: tuple[Group, ...] = (
    Group(0, "gender", "Gender"),
    Group(1, "age", "Age and youth"),
    Group(2, "expression", "Facial expression and smile"),
    Group(3, "whole", "Attributes of the whole face"),
    Group(4, "hair", "Hair and headwear"),
    Group(5, "eyes", "Eyes and eyebrows"),
    Group(6, "nose", "Nose"),
    Group(7, "cheeks", "Cheeks and ears"),
    Group(8, "mouth", "Mouth, lips and beard"),
    Group(9, "chin", "Chin"),
    Group(10, "neck", "Neck"),
)

# RAF-DB's order, which the published expression head uses.
EXPRESSION_LABELS: tuple[str, ...] = (
    "surprise",
    "fear",
    "disgust",
    "happiness",
    "sadness",
    "anger",
    "neutral",
)
NO_YES: tuple[str, str] = ("no", "yes")
GENDER_LABELS: tuple[str, str] = ("female", "male")


def _binary(name: str, group: int, celeba: str, description: str) -> Output:
    key = name.lower().replace("'", "").replace(" ", "_")
    return Output(name, key, Kind.BINARY, 2, group, NO_YES, None, celeba, description)


# The analysis outputs in checkpoint order: output_fcs.i is ANALYSIS_OUTPUTS[i].
ANALYSIS_OUTPUTS: tuple[Output, ...] = (
    Output(
        "Gender",
        "gender",
        Kind.BINARY,
        2,
        0,
        GENDER_LABELS,
        None,
        "Male",
        "Apparent gender; logits for [female, male]",
    ),
    Output("Age", "age", Kind.REGRESSION, 1, 1, (), "years", None, "Apparent age in years"),
    _binary("Young", 1, "Young", "Looks young"),
    Output(
        "Expression",
        "expression",
        Kind.CATEGORICAL,
        7,
        2,
        EXPRESSION_LABELS,
        None,
        None,
        "Basic facial expression (RAF-DB's seven classes)",
    ),
    _binary("Smiling", 2, "Smiling", "Smiling"),
    _binary("Attractive", 3, "Attractive", "Rated attractive by CelebA annotators"),
    _binary("Blurry", 3, "Blurry", "Image is blurry"),
    _binary("Chubby", 3, "Chubby", "Chubby face"),
    _binary("Heavy Makeup", 3, "Heavy_Makeup", "Heavy makeup"),
    _binary("Oval Face", 3, "Oval_Face", "Oval face"),
    _binary("Pale Skin", 3, "Pale_Skin", "Pale skin"),
    _binary("Bald", 4, "Bald", "Bald"),
    _binary("Bangs", 4, "Bangs", "Bangs"),
    _binary("Black Hair", 4, "Black_Hair", "Black hair"),
    _binary("Blond Hair", 4, "Blond_Hair", "Blond hair"),
    _binary("Brown Hair", 4, "Brown_Hair", "Brown hair"),
    _binary("Gray Hair", 4, "Gray_Hair", "Grey hair"),
    _binary("Receding Hairline", 4, "Receding_Hairline", "Receding hairline"),
    _binary("Straight Hair", 4, "Straight_Hair", "Straight hair"),
    _binary("Wavy Hair", 4, "Wavy_Hair", "Wavy hair"),
    _binary("Wearing Hat", 4, "Wearing_Hat", "Wearing a hat"),
    _binary("Arched Eyebrows", 5, "Arched_Eyebrows", "Arched eyebrows"),
    _binary("Bags Under Eyes", 5, "Bags_Under_Eyes", "Bags under the eyes"),
    _binary("Bushy Eyebrows", 5, "Bushy_Eyebrows", "Bushy eyebrows"),
    _binary("Eyeglasses", 5, "Eyeglasses", "Wearing eyeglasses"),
    _binary("Narrow Eyes", 5, "Narrow_Eyes", "Narrow eyes"),
    _binary("Big Nose", 6, "Big_Nose", "Big nose"),
    _binary("Pointy Nose", 6, "Pointy_Nose", "Pointy nose"),
    _binary("High Cheekbones", 7, "High_Cheekbones", "High cheekbones"),
    _binary("Rosy Cheeks", 7, "Rosy_Cheeks", "Rosy cheeks"),
    _binary("Wearing Earrings", 7, "Wearing_Earrings", "Wearing earrings"),
    _binary("Sideburns", 7, "Sideburns", "Sideburns"),
    _binary("Five O'Clock Shadow", 8, "5_o_Clock_Shadow", "Five o'clock shadow"),
    _binary("Big Lips", 8, "Big_Lips", "Big lips"),
    _binary("Mouth Slightly Open", 8, "Mouth_Slightly_Open", "Mouth slightly open"),
    _binary("Mustache", 8, "Mustache", "Moustache"),
    _binary("Wearing Lipstick", 8, "Wearing_Lipstick", "Wearing lipstick"),
    _binary("No Beard", 8, "No_Beard", "No beard"),
    _binary("Double Chin", 9, "Double_Chin", "Double chin"),
    _binary("Goatee", 9, "Goatee", "Goatee"),
    _binary("Wearing Necklace", 10, "Wearing_Necklace", "Wearing a necklace"),
    _binary("Wearing Necktie", 10, "Wearing_Necktie", "Wearing a necktie"),
)

RECOGNITION = Output(
    "Recognition",
    "embedding",
    Kind.EMBEDDING,
    512,
    None,
    (),
    None,
    None,
    "Identity embedding; compare L2-normalised vectors by cosine similarity",
)

ALL_OUTPUTS: tuple[Output, ...] = (*ANALYSIS_OUTPUTS, RECOGNITION)
EMBEDDING_SIZE = RECOGNITION.size
NUM_GROUPS = len(GROUPS)

# CelebA's own column order in list_attr_celeba.txt.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)

ATTRIBUTE_OUTPUTS: tuple[Output, ...] = tuple(o for o in ANALYSIS_OUTPUTS if o.is_attribute)

_BY_NAME = {o.name: o for o in ALL_OUTPUTS}
_BY_KEY = {o.key: o for o in ALL_OUTPUTS}
_BY_CELEBA = {o.celeba: o for o in ATTRIBUTE_OUTPUTS}


def output(name: str) -> Output:
    """Look an output up by its published name, its key or its CelebA name."""
    for table in (_BY_NAME, _BY_KEY, _BY_CELEBA):
        if name in table:
            return table[name]
    raise KeyError(f"unknown SwinFace output {name!r}; known: {sorted(_BY_KEY)}")


def outputs_of_group(group: int) -> tuple[Output, ...]:
    """The analysis outputs of one group, in checkpoint order."""
    return tuple(o for o in ANALYSIS_OUTPUTS if o.group == group)


def output_slices() -> dict[str, slice]:
    """Where each analysis output sits in the model's packed logit vector.

    The model returns all 42 analysis outputs packed into one (batch, 88)
    tensor in checkpoint order; this maps each published name to its columns.
    """
    slices, start = {}, 0
    for o in ANALYSIS_OUTPUTS:
        slices[o.name] = slice(start, start + o.size)
        start += o.size
    return slices


PACKED_SIZE = sum(o.size for o in ANALYSIS_OUTPUTS)


def _check_table() -> None:
    assert len(ANALYSIS_OUTPUTS) == 42, len(ANALYSIS_OUTPUTS)
    assert len(ATTRIBUTE_OUTPUTS) == 40
    assert sorted(o.celeba for o in ATTRIBUTE_OUTPUTS) == sorted(CELEBA_ATTRIBUTES)
    assert {o.group for o in ANALYSIS_OUTPUTS} == set(range(NUM_GROUPS))
    # Checkpoint order groups outputs contiguously by group.
    groups = [o.group for o in ANALYSIS_OUTPUTS]
    assert groups == sorted(groups)


_check_table()
