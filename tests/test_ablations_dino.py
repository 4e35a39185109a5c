"""Table 1 can add DINO rows: ``ablations.table1_extra`` adds ``baseline_<backbone>`` runs to the on-demand
``ablation_table1`` target (Snakemake's own DAG), and the tables label them."""

from __future__ import annotations

from _workflow_fixtures import planned_jobs, small_params, workflow_copy

from stcl.ablations import TABLE_ABLATIONS, ablation_params, table_ablations
from stcl.metrics.paper import backbone_label
from stcl.params import Params


def test_table1_extra_adds_baseline_runs():
    base = Params()
    assert table_ablations("table1", base) == TABLE_ABLATIONS["table1"]
    more = base.ablations.model_copy(update={"table1_extra": ("dinov3_vitl16",)})
    extra = base.model_copy(update={"ablations": more})
    names = table_ablations("table1", extra)
    assert names[-1] == "baseline_dinov3_vitl16" and names[:-1] == TABLE_ABLATIONS["table1"]
    assert table_ablations("table3", extra) == TABLE_ABLATIONS["table3"]
    run = ablation_params(extra, "baseline_dinov3_vitl16")
    assert run.model.backbone == "dinov3_vitl16" and not run.train_stcl.stcl.enabled
    assert backbone_label("dinov3_vitl16") == "DINOv3-L/16"
    assert backbone_label("dinov2_vitl14_reg4") == "DINOv2-L/14 reg4"


def test_snakemake_plans_the_dino_row_of_table1(tmp_path):
    work = workflow_copy(tmp_path / "wf", small_params({"ablations": {"table1_extra": ["dinov2_tiny"]}}))
    jobs = planned_jobs(work, "ablation_table1")
    trained = {j["wildcards"].get("name") for j in jobs if j["rule"] == "ablation_train"}
    assert "baseline_dinov2_tiny" in trained and "baseline_resnet50" in trained
