"""Typed view of params.yaml: the one source of defaults, types and validation.

Every knob of the pipeline lives in params.yaml; `load_params` turns it into frozen pydantic models.
An unknown key, a wrong type (strict: ``'yes'`` is not a bool, ``true`` or ``"0.5"`` is not a number) or an
impossible value raises `ParamsError` whose message names the file and lists every fault, one line each, by
its dotted key path (``train_stcl.optimizer.lr``; a fault of the shared ``train:`` section once, as
``train.<key>``); a YAML syntax error names the file, line and column (wording: `stcl.params_errors`). The
defaults below are the embedded *tiny* scale that runs on a CPU in minutes; the named presets (the paper's scale,
``stcl params --preset paper > params.yaml``) live in `stcl.presets`.

Every rule a params file must keep is a validator here, so that ``stcl params``, the Snakefile and every
command refuse the same files with the same lines; commands and the library read validated params and do not
check them again. The one rule a command's own argument takes part in, a sharded job's shard count, is
checked where the sharded commands read it (`stcl.infer.driver.select_shard`, `check_record_count`). The global batch splits by one rule, `grad_accum_steps`.

The Snakefile validates params.yaml with `load_params` (the same lines as ``stcl params``), and each rule's
``params: reads=`` names the keys that stage reads, from which dvc.yaml's ``params:`` lists are generated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)

# the family table (torch-free): valid `model.backbone` values, the CNNs, the hub backbones, ViT depths
from stcl.families import BACKBONES, CNN_BACKBONES, HUB_BACKBONES, VIT_DEPTHS
from stcl.params_errors import fault_lines, read_yaml, yaml_error_line

# the named classes of the embedded data (numpy-free): the names `synth.confusable_pairs` may use
from stcl.synth_classes import named_kinds

__all__ = [
    "ParamsError",
    "Params",
    "SynthParams",
    "NuisanceParams",
    "DataParams",
    "ClipParams",
    "AugmentParams",
    "ModelParams",
    "StclParams",
    "OptimizerParams",
    "TrainDefaults",
    "TrainStageParams",
    "STAGE_RECIPES",
    "InferParams",
    "PseudoLabelParams",
    "TeacherParams",
    "EvaluateParams",
    "TCParams",
    "ResourceParams",
    "TrainResourceParams",
    "TRAIN_STAGES",
    "BACKBONES",
    "CNN_BACKBONES",
    "HUB_BACKBONES",
    "hub_fault",
    "grad_accum_steps",
    "load_params",
    "parse_params",
    "params_json_schema",
    "merge_overrides",
]

# Numbers are strict: a YAML bool (``true``) or a quoted string (``"0.5"``) is refused with its key named, not
# read as 1 or 0.5; a float key still takes a YAML int (``lr: 1``). Lists still become tuples.
Int = StrictInt
Float = StrictFloat
PositiveInt = Annotated[Int, Field(gt=0)]
NonNegInt = Annotated[Int, Field(ge=0)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegFloat = Annotated[Float, Field(ge=0)]
Probability = Annotated[Float, Field(ge=0, le=1)]
Fraction = Annotated[Float, Field(gt=0, le=1)]


def _one_message(message: str) -> WrapValidator:
    """Report a failed union as ``message`` instead of one line per pydantic branch."""

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(message) from None

    return WrapValidator(check)


VideoCount = Annotated[PositiveInt | Literal["all"], _one_message('must be a positive integer or "all"')]

Backbone = Literal[BACKBONES]  # type: ignore[valid-type]


def hub_fault(backbone: str, pretrained: object, pretrained_from_hub: bool) -> str | None:
    """Why ``model.pretrained_from_hub`` cannot hold for this model (None when it can): `ModelParams` validates
    it; `stcl.models.encoders.build_encoder` receives validated params and does not check it again."""
    if not pretrained_from_hub:
        return None
    if pretrained is not None:
        return "true while model.pretrained names a file: pick one source (the file, or timm's hub)"
    if backbone not in HUB_BACKBONES:
        return (
            f"{backbone} has no timm hub weights (hub: {', '.join(HUB_BACKBONES)}); name a local file in "
            "model.pretrained and set this to false"
        )
    return None


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the file and the key path."""


class _Strict(BaseModel):
    # Unknown keys are errors; bools are strict (YAML 'yes' in quotes is a string, not true).
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitCounts(_Strict):
    train: NonNegInt
    val: NonNegInt
    test: NonNegInt = 0


def _ordered_range(name: str, value: tuple[Any, Any] | None) -> tuple[Any, Any] | None:
    if value is not None and value[0] > value[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(value)}")
    return value


class NuisanceParams(_Strict):
    """Per-frame nuisance of the embedded data (data/README.md, "The embedded miniature"). The defaults are the
    miniature's; ``NuisanceParams.off()`` (every draw disabled) writes the data of the world before the miniature."""

    brightness_sd: NonNegFloat = 18.0  # per-frame brightness offset, grey levels (on top of the per-video one)
    contrast_sd: NonNegFloat = 0.15  # per-frame contrast factor 1 + N(0, sd), clipped to [0.5, 1.5]
    color_sd: NonNegFloat = 0.06  # per-frame gain of each RGB channel 1 + N(0, sd), clipped to [0.7, 1.3]
    blur_prob: Probability = 0.25  # chance that a frame is Gaussian-blurred
    blur_sigma: tuple[PositiveFloat, PositiveFloat] = (0.8, 1.6)  # sigma (px) of a blurred frame, drawn uniformly
    jpeg_quality: tuple[Annotated[Int, Field(ge=10, le=100)], Annotated[Int, Field(ge=10, le=100)]] | None = (35, 95)
    # ^ per-frame JPEG quality drawn uniformly in [low, high]; null: synth.jpeg_quality for every frame
    occlusion_prob: Probability = 0.5  # chance that a video (or image) has one occlusion by a flat distractor
    occlusion_frames: tuple[PositiveInt, PositiveInt] = (2, 4)  # how many consecutive frames it lasts
    occlusion_size: tuple[Fraction, Fraction] = (0.3, 0.5)  # its width and height as fractions of the frame's

    @classmethod
    def off(cls) -> "NuisanceParams":
        """No per-frame nuisance: every draw disabled (the world before the miniature)."""
        return cls(brightness_sd=0.0, contrast_sd=0.0, color_sd=0.0, blur_prob=0.0, jpeg_quality=None,
                   occlusion_prob=0.0)

    @model_validator(mode="after")
    def _ranges(self) -> "NuisanceParams":
        for name in ("blur_sigma", "jpeg_quality", "occlusion_frames", "occlusion_size"):
            _ordered_range(name, getattr(self, name))
        return self


class SynthParams(_Strict):
    """The embedded datasets written by `stcl synth` (VSPW, COCO panoptic and ADE20K formats)."""

    seed: Int = 0
    height: Annotated[Int, Field(ge=32)] = 64
    width: Annotated[Int, Field(ge=32)] = 96
    frames_per_video: Annotated[Int, Field(ge=20)] = 20
    # label-scarce (data/README.md): 4 labelled videos, twice as many unlabelled (test) ones for pseudo labels, and
    # a val set large enough that its own noise is small against the effects the claims compare
    videos: SplitCounts = SplitCounts(train=4, val=24, test=8)
    coco_images: SplitCounts = SplitCounts(train=40, val=8)
    ade_images: SplitCounts = SplitCounts(train=40, val=8)
    num_classes: Annotated[Int, Field(ge=2, le=124)] = 8
    jpeg_quality: Annotated[Int, Field(ge=50, le=100)] = 95
    # The miniature's world (data/README.md, "The embedded miniature"): nuisance that single frames cannot see
    # through, twin classes told apart by place, every class in a labelled video. With
    # ``nuisance: NuisanceParams.off(), confusable_pairs: [], train_covers_classes: false`` (and the sizes of
    # data/README.md) it writes the world before the miniature, byte for byte.
    nuisance: NuisanceParams = NuisanceParams()
    # (upper, lower) class names of the videos: lower takes upper's appearance; upper occurs only above the
    # horizon, lower only below it. Both stuff or both things, each name in one pair at most.
    # (the default: those of these two pairs whose classes are among the ``num_classes`` in use)
    confusable_pairs: tuple[tuple[str, str], ...] = (("sky", "road"), ("bus", "car"))
    train_covers_classes: StrictBool = True  # every class occurs in a labelled train video (class i in video i mod n)

    @model_validator(mode="after")
    def _pairs_name_classes_in_use(self) -> "SynthParams":
        if not self.confusable_pairs:
            return self
        kinds = named_kinds(self.num_classes)
        if "confusable_pairs" not in self.model_fields_set:  # the default pairs: those whose classes are in use
            in_use = tuple(pair for pair in self.confusable_pairs if all(name in kinds for name in pair))
            object.__setattr__(self, "confusable_pairs", in_use)
            return self
        seen: set[str] = set()
        for upper, lower in self.confusable_pairs:
            if upper == lower:
                raise ValueError(f"confusable_pairs: a pair names {upper!r} twice")
            for name in (upper, lower):
                if name not in kinds:
                    raise ValueError(
                        f"confusable_pairs: {name!r} is not one of the named classes in use ({', '.join(kinds)})")
                if name in seen:
                    raise ValueError(f"confusable_pairs: {name!r} is in more than one pair")
                seen.add(name)
            if kinds[upper] != kinds[lower]:
                raise ValueError(f"confusable_pairs: {upper!r} is {kinds[upper]} but {lower!r} is {kinds[lower]}; "
                                 "pair stuff with stuff, things with things")
        return self


class UnlabeledParams(_Strict):
    """The pool of unlabeled 480P frames for pseudo labels (paper 2.3)."""

    source: Literal["vspw", "folder"] = "vspw"
    splits: tuple[Literal["train", "val", "test"], ...] = ("test",)
    folder: Path | None = None  # for source=folder: <folder>/<video>/<frame>.jpg

    @model_validator(mode="after")
    def _folder_given(self) -> "UnlabeledParams":
        if self.source == "folder" and self.folder is None:
            raise ValueError("folder must be set when source is 'folder'")
        return self


class DataParams(_Strict):
    # true: the workflow generates the embedded datasets (`stcl synth`) into the roots below when absent;
    # false: the roots hold real data (VSPW_480p, COCO panoptic, ADE20K) and the synth stage is skipped.
    synthetic: StrictBool = True
    vspw_root: Path = Path("data/VSPW_480p")
    coco_root: Path = Path("data/coco")
    ade_root: Path = Path("data/ADEChallengeData2016")
    unlabeled: UnlabeledParams = UnlabeledParams()

    @model_validator(mode="after")
    def _synth_writes_the_roots(self) -> "DataParams":
        """With ``synthetic: true`` the roots are where `stcl synth --out <dir>` writes (the workflow's synth rule)."""
        vspw = self.vspw_root
        if self.synthetic and (vspw.name, self.coco_root, self.ade_root) != (
            "VSPW_480p",
            vspw.parent / "coco",
            vspw.parent / "ADEChallengeData2016",
        ):
            raise ValueError(
                "synthetic is true, so the data roots (vspw_root, coco_root, ade_root) must be <dir>/VSPW_480p, "
                "<dir>/coco and <dir>/ADEChallengeData2016 (what `stcl synth --out <dir>` writes); got "
                f"{vspw}, {self.coco_root}, {self.ade_root}"
            )
        return self


class ClipParams(_Strict):
    """Query frame t plus reference frames t+k (CFFM/MRCFA use k in [-9, -6, -3])."""

    reference_offsets: tuple[Int, ...] = (-6, -3)
    boundary: Literal["clamp", "reflect"] = "clamp"

    @model_validator(mode="after")
    def _no_zero(self) -> "ClipParams":
        if 0 in self.reference_offsets:
            raise ValueError("reference_offsets must not contain 0 (the query frame itself)")
        return self


class AugmentParams(_Strict):
    """mmseg's train pipeline: RandomResize(scale, ratio_range) → RandomCrop(cat_max_ratio) → flip → photometric."""

    scale: tuple[PositiveInt, PositiveInt] = (96, 64)  # (W, H) before the ratio draw, as mmseg's img_scale
    ratio_range: tuple[PositiveFloat, PositiveFloat] = (0.5, 2.0)
    crop_size: tuple[PositiveInt, PositiveInt] = (64, 64)  # (H, W)
    cat_max_ratio: Fraction = 0.75
    flip_prob: Probability = 0.5
    photometric: StrictBool = True

    @model_validator(mode="after")
    def _ordered(self) -> "AugmentParams":
        if self.ratio_range[0] > self.ratio_range[1]:
            raise ValueError("ratio_range must be (low, high) with low <= high")
        return self


class ModelParams(_Strict):
    """Encoder + UperNet, shared by every trained model (the paper uses one architecture throughout)."""

    backbone: Backbone = "resnet18"
    pretrained: Path | None = None  # local checkpoint file; never downloaded unless pretrained_from_hub
    pretrained_from_hub: StrictBool = False
    # fnmatch patterns of parameter names NOT loaded from `pretrained` or a stage's init file (they keep their
    # fresh init), e.g. ["decode_head.conv_seg.*", "auxiliary_head.conv_seg.*"]; anything else must fit exactly.
    load_exclude: tuple[str, ...] = ()
    channels: PositiveInt = 64  # UPerHead channels (512 in the paper)
    aux_channels: PositiveInt = 32  # FCNHead channels (256 in the paper)
    dropout: Probability = 0.1
    drop_path: Probability = 0.1
    # What STCL's projection head reads: "backbone_last", the encoder's last stage (paper 2.2: the encoder's
    # feature maps F_t; stride 32), or "fpn_bottleneck", the decoder's fused map (stride 4), a variant not in
    # the paper. Why, and what each costs: stcl.models.segmentor.
    projection_input: Literal["backbone_last", "fpn_bottleneck"] = "backbone_last"
    sync_bn: StrictBool = False
    grad_checkpointing: StrictBool = False  # recompute encoder blocks in backward (Swin-L at 768² with 4 frames)
    # ViT encoders (dino*): the four blocks (0-based) whose tokens feed the neck; None: evenly spaced
    out_indices: tuple[NonNegInt, NonNegInt, NonNegInt, NonNegInt] | None = None
    # Normalisation happens inside the model (mmseg's data_preprocessor), so checkpoints are self-describing.
    mean: tuple[Float, Float, Float] = (123.675, 116.28, 103.53)
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = (58.395, 57.12, 57.375)

    @field_validator("pretrained_from_hub")
    @classmethod
    def _one_source(cls, value: bool, info: ValidationInfo) -> bool:
        backbone = info.data.get("backbone")  # absent when invalid: that fault is reported on its own
        fault = None if backbone is None else hub_fault(backbone, info.data.get("pretrained"), value)
        if fault is not None:
            raise ValueError(fault)
        return value

    @field_validator("out_indices")
    @classmethod
    def _vit_blocks(cls, value: tuple[int, ...] | None, info: ValidationInfo) -> tuple[int, ...] | None:
        backbone = info.data.get("backbone")  # absent when invalid: that fault is reported on its own
        if value is None or backbone is None:
            return value
        if backbone not in VIT_DEPTHS:
            raise ValueError(f"applies to the ViT backbones ({', '.join(VIT_DEPTHS)}), not {backbone}; set it to null")
        depth = VIT_DEPTHS[backbone]
        if max(value) >= depth:
            raise ValueError(f"{backbone} has {depth} blocks: need four indices in [0, {depth}), got {list(value)}")
        return value


class StclParams(_Strict):
    """Spatial-temporal consistency loss (paper eq. 1-3): total = CE + aux_weight·aux + weight·STCL."""

    enabled: StrictBool = True
    weight: NonNegFloat = 0.2
    dim: PositiveInt = 64  # projection dim (512 in the paper)
    tau: PositiveFloat = 0.07
    chunk_size: PositiveInt = 4096
    sampling: Literal["none", "random", "hard"] = "none"
    max_anchors: PositiveInt | None = None
    # Which pixels are an anchor's positives: "labels" (the paper: the keys of its own class) or "shuffled",
    # a NEGATIVE CONTROL, not a recipe: each clip's labels are permuted at random over its valid pixels (query
    # and reference frames together; drawn from the training RNG) before positives are chosen, so positives
    # are no longer same-class; the cross-entropy still reads the true labels. benchmarks/recipe_claims.py
    # trains it (ablation train_stcl_shuffled) to check that STCL's effect comes from same-class pairing.
    positives: Literal["labels", "shuffled"] = "labels"


class OptimizerParams(_Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: PositiveFloat = 6e-4
    weight_decay: NonNegFloat = 0.01
    betas: tuple[Probability, Probability] = (0.9, 0.999)
    momentum: Probability = 0.9
    warmup_iters: NonNegInt = 20
    warmup_ratio: Probability = 1e-6
    power: PositiveFloat = 1.0
    min_lr: NonNegFloat = 0.0
    clip_grad_norm: PositiveFloat | None = None
    # Layer-wise lr decay for ViT encoders (mmseg's LearningRateDecayOptimizerConstructor, "layer_wise"):
    # block i of L gets lr·d^(L-i), the embeddings lr·d^(L+1), the neck and heads lr. None: off. AdamW only.
    layer_decay: Fraction | None = None

    @field_validator("layer_decay")
    @classmethod
    def _adamw_only(cls, value: float | None, info: ValidationInfo) -> float | None:
        name = info.data.get("name")  # absent when invalid: that fault is reported on its own
        if value is not None and name is not None and name != "adamw":
            raise ValueError(f"applies to AdamW only (name: adamw), not {name}; set it to null")
        return value


class DatasetMix(_Strict):
    """One dataset of a training stage's mix; ``weight`` is its sampling share (`stcl.train.mix`).

    A dataset's expected share of the stage's samples is weight / (sum of the stage's weights). Datasets whose
    items have the same frames T (VSPW and pseudo clips) are one combined dataset (paper 3.4: "We combine the
    pseudo data and training set to obtain a new dataset"): every global batch draws each of its samples from
    them with these shares, so one batch holds both. Clips and single images (COCO, ADE20K: T = 1) cannot be
    stacked into one batch: there the draw is per global batch, a group of datasets taking a batch with the
    share of its summed weight. The loss averages cross-entropy over the kept (non-255) pixels of the whole
    micro-batch, and STCL over the anchors of the micro-batch, so in a combined batch a pseudo-labelled clip
    weighs by its kept-pixel count, as it would in one dataset made of both.
    """

    name: Literal["vspw", "coco", "ade", "pseudo"]
    weight: PositiveFloat = 1.0


class TrainDefaults(_Strict):
    """Training settings shared by every stage (params.yaml ``train:``); a stage section states what differs."""

    iters: PositiveInt = 300  # the miniature's learning curve and command 1's 15 minutes (docs/results.md)
    batch_size: PositiveInt = 4  # global batch (all devices × accumulation)
    batch_per_device: PositiveInt = 4
    aux_weight: NonNegFloat = 0.4
    stcl: StclParams = StclParams()
    optimizer: OptimizerParams = OptimizerParams()
    amp: Literal["off", "bf16", "fp16"] = "off"
    seed: Int = 0
    workers: NonNegInt = 0
    checkpoint_every: PositiveInt = 100
    log_every: PositiveInt = 10


# What each stage states beyond `train:` in the default recipe (paper 2.1-2.3, Tables 2 and 4). These fill a
# hand-written stage section only; a printed params file (`stcl.presets.recipe_dict`) states every key of every stage.
# train_ade is Table 2's "Swin-L + ADE", the teacher member paper 3.4 names ("ensembles Swin-L+ADE20K (in
# Table 2) and Swin-L+STCL (in Table 3)"): VSPW + ADE20K from the encoder's ImageNet weights
# (`model.pretrained`), without COCO-pre, which is Table 2's separate row "Swin-L + COCO-pre".
STAGE_RECIPES: dict[str, dict[str, Any]] = {
    "pretrain_coco": {"datasets": [{"name": "coco"}], "label_space": "coco", "stcl": {"enabled": False}},
    "train_stcl": {"datasets": [{"name": "vspw"}], "init": "pretrain_coco"},
    "train_ade": {"datasets": [{"name": "vspw"}, {"name": "ade"}], "init": None, "stcl": {"enabled": False}},
    "train_student": {
        "datasets": [{"name": "vspw"}, {"name": "pseudo", "weight": 2.0}],  # 80 : 160 frames, the split's sizes
        "init": "pretrain_coco",
        "iters": 400,
    },
}
# The training stages, in the order they run: the one list of their names (params sections, `init`, teacher
# and ensemble members, the workflow's rules, `stcl.roles`).
TRAIN_STAGES: tuple[str, ...] = tuple(STAGE_RECIPES)
TrainStageName = Literal[TRAIN_STAGES]  # type: ignore[valid-type]


def grad_accum_steps(batch_size: int, world_size: int, batch_per_device: int) -> int:
    """The one rule of the global batch: ``batch_size = world_size × batch_per_device × steps``; returns the
    micro-batches (gradient accumulation steps) each of ``world_size`` processes runs per optimiser step, or
    raises ValueError when the global batch does not split exactly. Params validation, training
    (`stcl.train.mix`, `stcl.train.loop`) and `stcl plan` all use it."""
    per_step = world_size * batch_per_device
    if batch_size <= 0 or batch_per_device <= 0 or world_size <= 0:
        raise ValueError("batch_size, batch_per_device and world_size must be positive")
    if batch_size % per_step:
        raise ValueError(
            f"batch_size={batch_size} is not a multiple of world_size × batch_per_device = "
            f"{world_size} × {batch_per_device}; gradient accumulation needs an integral number of steps"
        )
    return batch_size // per_step


class TrainStageParams(TrainDefaults):
    """One training stage: `TrainDefaults` merged with the stage's own section (its datasets, init, ...)."""

    datasets: tuple[DatasetMix, ...]
    label_space: Literal["vspw", "coco"] = "vspw"
    init: TrainStageName | None = None  # previous stage whose weights initialise this one
    # The name the run's seeds derive from with `seed` (`stcl.train.seeds.stage_seed`): None is the stage's
    # own name, so stages with equal params still draw independent samples, augmentations and dropout; an
    # ablation run sets its own name (`stcl.ablations`).
    seed_stream: str | None = None

    @model_validator(mode="after")
    def _batch_divides(self) -> "TrainStageParams":
        try:
            grad_accum_steps(self.batch_size, 1, self.batch_per_device)
        except ValueError:
            raise ValueError("batch_size must be a multiple of batch_per_device") from None
        return self


class InferParams(_Strict):
    """Sliding window + multi-scale + flip test-time augmentation (paper 3.4)."""

    models: Annotated[tuple[TrainStageName, ...], Field(min_length=1)] = ("train_student", "train_stcl", "train_ade")
    weights: tuple[PositiveFloat, ...] | None = None
    scales: tuple[PositiveFloat, ...] = (1.0, 1.25)  # the miniature's; the paper's six: `stcl params --preset paper`
    flip: StrictBool = True
    crop_size: tuple[PositiveInt, PositiveInt] = (64, 64)  # (H, W) sliding window
    stride: tuple[PositiveInt, PositiveInt] = (64, 64)  # windows overlap where they are clamped to the frame
    batch_size: PositiveInt = 16  # windows per forward pass (windows of one scale/flip of consecutive frames share batches)
    workers: NonNegInt = 1  # frame-decoding threads
    amp: Literal["off", "bf16", "fp16"] = "off"  # autocast of the forward pass (GPU); probabilities stay fp32
    shards: PositiveInt = 1  # val/test inference: one GPU job per shard (sorted(videos)[i::shards]), then a gather

    @model_validator(mode="after")
    def _weights_match(self) -> "InferParams":
        if self.weights is not None and len(self.weights) != len(self.models):
            raise ValueError("weights must have one entry per model")
        return self


class TeacherParams(_Strict):
    """Teacher = average of softmax probabilities of these members (paper Table 4)."""

    members: Annotated[tuple[TrainStageName, ...], Field(min_length=1)] = ("train_ade", "train_stcl")
    weights: tuple[PositiveFloat, ...] | None = None


class PseudoLabelParams(_Strict):
    threshold: Probability = 0.5  # keep argmax where max prob > threshold (strict), else 255
    # class-balanced thresholds (Zou et al. 2018; stcl.infer.thresholds): also keep the top `portion` of each
    # class's pixels per frame. None (default): the paper's fixed threshold only.
    class_balanced_portion: Fraction | None = None
    shards: PositiveInt = 2
    scales: tuple[PositiveFloat, ...] = (1.0,)
    flip: StrictBool = True


class EvaluateParams(_Strict):
    workers: PositiveInt = 2
    vc_lengths: tuple[PositiveInt, ...] = (8, 16)


class TCParams(_Strict):
    """The TC metric (VSPW_code TC_cal.py): RAFT flows of val, computed once by `stcl flow`."""

    # official raft-things.pth or torchvision's raft_large_C_T_V1 file; null: TC is skipped (nothing downloaded)
    raft_weights: Path | None = None
    videos: VideoCount = 100  # the first N videos of val.txt (official: 100), or all
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available, else cpu


class ResourceParams(_Strict):
    """Cluster resources of one rule (Snakemake `resources:` → Slurm)."""

    gpus: NonNegInt = 0  # per node
    nodes: PositiveInt = 1  # training only: one srun task per GPU on each node (docs/cluster.md "Several nodes")
    cpus_per_gpu: PositiveInt = 8
    cpus: PositiveInt = 1  # used when gpus == 0
    mem_mb: PositiveInt = 4000
    runtime: PositiveInt = 60  # minutes
    partition: str | None = None
    account: str | None = None


class TrainResourceParams(ResourceParams):
    """`ResourceParams` of the training jobs, plus how long their processes wait for each other."""

    # seconds each process of a multi-process training waits for all the others at the start
    # (docs/cluster.md "Several nodes"); then it exits 69 naming what it waited for. Not part of a run's fingerprint.
    rendezvous_timeout_s: PositiveInt = 600


class ClusterParams(_Strict):
    default: ResourceParams = ResourceParams()
    train: TrainResourceParams = TrainResourceParams(gpus=1, mem_mb=32000, runtime=720)
    infer: ResourceParams = ResourceParams(gpus=1, mem_mb=16000, runtime=240)


class AblationParams(_Strict):
    """On-demand ablations (`stcl.ablations`): ``table1_extra`` adds ``baseline_<backbone>`` runs to Table 1.

    ``pretrained`` names each Table 1 backbone's own ImageNet weights file (paper 3.2: CNNs ImageNet-1K,
    transformers ImageNet-22K), e.g. ``{resnet50: weights/resnet50_v1c.pth}``; ``baseline_<b>`` loads it. A
    backbone not listed loads ``model.pretrained`` when it is ``model.backbone``, else starts from random
    init (`stcl ablation` says so). Empty by default: nothing is read or downloaded.
    """

    table1_extra: tuple[Backbone, ...] = ()
    pretrained: dict[Backbone, Path] = {}


class _ParamsRules(_Strict):
    """The rules across sections of `Params` (whose fields, one section per training stage among them, are
    declared below it)."""

    @model_validator(mode="after")
    def _layout_reaches_batch(self) -> "_ParamsRules":
        """Every stage's global batch splits exactly over nodes × GPUs × batch_per_device (× accumulation)."""
        for kind in ("default", "infer"):
            if getattr(self.cluster, kind).nodes != 1:  # type: ignore[attr-defined]
                raise ValueError(f"cluster.{kind}.nodes must be 1: only training runs across nodes")
        res = self.cluster.train  # type: ignore[attr-defined]
        if res.nodes > 1 and res.gpus < 1:
            raise ValueError(f"cluster.train.nodes = {res.nodes} needs cluster.train.gpus >= 1 (one process per GPU)")
        world = res.nodes * max(res.gpus, 1)
        for name in TRAIN_STAGES:
            sp = getattr(self, name)
            try:
                grad_accum_steps(sp.batch_size, world, sp.batch_per_device)
            except ValueError:
                raise ValueError(
                    f"cluster.train.nodes × cluster.train.gpus × {name}.batch_per_device = {res.nodes} × {res.gpus} × "
                    f"{sp.batch_per_device} = {world * sp.batch_per_device} does not divide {name}.batch_size = "
                    f"{sp.batch_size}: the global batch must split exactly (lower batch_per_device or the GPU count)"
                ) from None
        return self

    @model_validator(mode="before")
    @classmethod
    def _inherit_train(cls, data: Any) -> Any:
        """Fill each stage section from ``train`` and the stage's recipe (own keys win, mappings merge)."""
        if not isinstance(data, dict):
            return data
        shared = data.get("train", {})
        shared = shared.model_dump(mode="json") if isinstance(shared, BaseModel) else shared
        if not isinstance(shared, dict):
            return data  # the field validator reports it
        out = dict(data)
        for name in TRAIN_STAGES:
            own = data.get(name, {})
            if isinstance(own, dict):
                out[name] = merge_overrides(merge_overrides(shared, STAGE_RECIPES[name]), own)
        return out

    def stage(self, name: str) -> TrainStageParams:
        if name not in TRAIN_STAGES:
            raise ParamsError(f"unknown training stage {name!r}; valid: {', '.join(TRAIN_STAGES)}")
        return getattr(self, name)


# Every knob, in the order a printed params file states the sections: one section per training stage
# (`TRAIN_STAGES`) after the shared ``train:``.
Params = create_model(
    "Params",
    __base__=_ParamsRules,
    __module__=__name__,
    __doc__="Every knob. A training stage = ``train`` (shared) ← the stage's default recipe ← its own section.",
    synth=(SynthParams, SynthParams()),
    data=(DataParams, DataParams()),
    clips=(ClipParams, ClipParams()),
    augment=(AugmentParams, AugmentParams()),
    model=(ModelParams, ModelParams()),
    train=(TrainDefaults, TrainDefaults()),
    **{name: (TrainStageParams, ...) for name in TRAIN_STAGES},
    teacher=(TeacherParams, TeacherParams()),
    pseudo_label=(PseudoLabelParams, PseudoLabelParams()),
    infer=(InferParams, InferParams()),
    evaluate=(EvaluateParams, EvaluateParams()),
    tc=(TCParams, TCParams()),
    cluster=(ClusterParams, ClusterParams()),
    ablations=(AblationParams, AblationParams()),
)


def parse_params(data: Any, source: str = "params") -> Params:
    """Validate an already-parsed mapping; an empty file (None) is an error, ``{}`` means every default."""
    if data is None:
        raise ParamsError(f"{source}: params file is empty (write one with `stcl params --preset tiny`)")
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(fault_lines(source, err, data, TRAIN_STAGES)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; errors name the file and the key path."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ParamsError(f"{path}: cannot read params file ({err.strerror})") from None
    try:
        data = read_yaml(text)
    except yaml.YAMLError as err:
        raise ParamsError(yaml_error_line(path, err)) from None
    return parse_params(data, str(path))


def params_json_schema() -> dict[str, Any]:
    """JSON schema of params.yaml (for Snakemake's `validate(config, ...)`)."""
    return Params.model_json_schema()


def merge_overrides(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` merged in recursively (mappings merge, anything else replaces)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge_overrides(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out
