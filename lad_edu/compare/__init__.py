"""``lad-edu compare``: train several assignment strategies on the same data, network, schedule and seeds,
and report what each one gave and what each one did to the anchors.

A *strategy* is one base config (default ``classroom_compare``: ``classroom_paa`` at 128 px) with two
fields changed, the assigner and the distillation mode; nothing else differs between the runs of a
comparison, so a difference in AP is a difference of assignment (and, for the LAD family, of who predicts
for the assigner; LAD's box loss is also not IoU-weighted, as in MMDetection's ``LADHead``):

==========  ======================  ================  ==================================================
strategy    ``assign.assigner``     ``distill.mode``  teacher
==========  ======================  ================  ==================================================
fixed       fixed                   none
atss        atss                    none
paa         paa                     none
soft        paa                     soft              the ``paa`` run of the same seed
lad         paa                     lad               the ``paa`` run of the same seed
solad       paa                     solad             the ``paa`` run of the same seed
colad       paa                     colad             none: a second network of the base's backbone
any other   the assigner so named   none              (a name of :data:`lad_edu.assign.ASSIGNERS`)
==========  ======================  ================  ==================================================

The LAD family's teacher is the ``paa`` run of its seed, trained first: the paper's "same-size teacher"
setting (a teacher of the student's own architecture and schedule). Asking for ``lad`` (or ``soft``,
``solad``) without ``paa`` adds ``paa`` to the comparison, as it is trained anyway. ``teacher``
(``--teacher``) names a run checkpoint to learn from instead, say a smaller network's (the paper's Table 3:
a small teacher helps a larger student); then no run waits for another.

Seeds ``0 .. seeds-1`` (``seed=k``) are given to every strategy. ``epochs`` overrides ``optim.epochs`` and
scales ``optim.milestones`` with it: each milestone ``m`` of an ``E``-epoch schedule becomes
``round(m * epochs / E)``, and those that land on 0 or on ``epochs`` or later are dropped
(``classroom_paa``'s ``[16, 22]`` of 24 epochs becomes ``[8, 11]`` for 12, none for 1). ``overrides``
(``--set``) apply to every run, before the strategy's fields and the seed.

Runs: ``jobs`` worker processes (``spawn``, one thread each, ``OMP_NUM_THREADS=1``; a worker trains one run
after the other, so torch is imported once per worker, not per run) train the runs, a LAD-family run when
its teacher has finished. Each run's output goes to its ``train.log``; one progress bar counts the
iterations of all runs (its ETA comes from this session's speed), and a line is printed per finished run.

Re-running the same comparison reuses what is done. A run directory that holds a run is compared with the
config the comparison wants (its ``config.yaml``):

* the same config and finished (with its final evaluation): reused, not trained;
* the same config, not finished: resumed from its ``checkpoint.pt`` (a kill loses at most
  ``checkpoint_every`` iterations or the epoch in progress, whichever is shorter), or started again if it
  was killed before its first checkpoint;
* another config: an error naming the differing keys; with ``overwrite=True`` (``--overwrite``) it is
  trained again from scratch (its files deleted). Matching runs are reused even with ``overwrite``: use a
  new ``--out`` to train everything again.

The report directory ``out``::

    out/<strategy>/seed<k>/   a run directory of lad_edu.train (config.yaml, metrics.jsonl, checkpoint.pt,
                              eval/coco_stats.json, eval/detections.json), plus train.log (the run's output)
                              and compare.json ({"train_seconds", "finished"}, written by the comparison)
    out/results.json          the numbers below
    out/results.md            the same as tables, with the figures
    out/figures/*.png         ap, loss_curves, positives_vs_size, level_share, side_by_side, colad_timeline

``results.json``::

    {"settings": {"config", "overrides", "data", "train_images", "val_images", "strategies", "teacher",
                  "seeds", "epochs", "milestones", "strides", "size_images"},
     "size_bins": {"labels": [...], "edges": [...], "num_gts": [...]},
     "strategies": {name: {
         "summary": {key: {"mean", "std"}},        # over seeds; std null with one seed
         "runs": [{"seed", "run_dir", "state", "teacher", "train_seconds",
                   "coco": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", ... the 12 numbers},
                   "detections",                   # the run's eval/detections.json (the data's category ids)
                   "assignment": {"pos_per_gt", "gts_without_pos", "pos_iou", "level_share": [L],
                                  "pos_per_gt_by_size": [bins],
                                  "low_quality_per_gt_by_size": [bins]}}]}},   # fixed IoU only
     "figures": {name: path relative to out}}

* ``coco``: the last evaluation, as pycocotools gives it (0-1; its ``-1``, "nothing to measure", is null).
* ``train_seconds``: the wall time of ``train`` in the run's process (training and its periodic evaluations,
  summed over the sessions that trained it, a session killed by a signal other than Ctrl-C excepted; under
  ``jobs > 1`` the runs share the cores). A LAD run's time excludes its teacher's. Null for a run that the
  comparison found finished without having trained it.
* ``assignment``, from training (the mean of the last epoch's ``metrics.jsonl`` rows): ``pos_per_gt``
  (positive anchors per GT), ``gts_without_pos`` (the share of GTs that no anchor learns), ``pos_iou`` (the
  mean IoU of a positive anchor with its GT), ``level_share`` (the share of positives on each FPN level, P3
  first).
* ``low_quality_per_gt_by_size`` (fixed IoU only): of those positives, the ones only its low-quality step
  gave, below ``pos_iou_thr`` (:func:`lad_edu.assign.low_quality_positives`); drawn apart in the figure.
* ``pos_per_gt_by_size``: positives per GT for the GTs of each size bin, on the first ``size_images``
  validation images, labelled as training would label them with the run's final checkpoint
  (:func:`checkpoint_assigner`; the networks in eval mode). The bins are cut at each level's anchor side
  (``octave_base_scale * stride``, in the network's input pixels): "16-32" holds the objects between the P3
  and the P4 anchor. Bins without any GT are left out. Not COCO's small / medium / large, which are absolute
  areas for COCO's image sizes (on the 128 px classroom images nothing is "large").
* ``summary``: for every key of ``coco``, ``train_seconds`` and ``assignment``, the mean and std (ddof 1)
  over the seeds; lists entry by entry (:func:`lad_edu.viz.seed_mean_std`).

The numbers are what the runs give: every strategy gets the same settings, none is tuned to win.

Modules, in the order a comparison runs: :mod:`~lad_edu.compare.plan` (strategies, runs, run directories),
:mod:`~lad_edu.compare.runner` (worker processes, progress), :mod:`~lad_edu.compare.measure` (what each run
gave), :mod:`~lad_edu.compare.report` (tables, figures), :mod:`~lad_edu.compare.main` (:func:`compare` and
the command line).
"""

from lad_edu.compare.main import add_compare_arguments, compare, run_compare
from lad_edu.compare.measure import checkpoint_assigner
from lad_edu.compare.plan import (
    DEFAULT_STRATEGIES,
    STRATEGIES,
    RunSpec,
    plan_runs,
    run_state,
    schedule_overrides,
    strategy_overrides,
)
from lad_edu.compare.runner import RunFailedError, resolve_jobs

__all__ = [
    "DEFAULT_STRATEGIES",
    "STRATEGIES",
    "RunFailedError",
    "RunSpec",
    "add_compare_arguments",
    "checkpoint_assigner",
    "compare",
    "plan_runs",
    "resolve_jobs",
    "run_compare",
    "run_state",
    "schedule_overrides",
    "strategy_overrides",
]
