//! What a matcher training run reports ([`TrainReport`], `eval/metrics.json`), including
//! whether its cross-encoder teacher was used ([`TeacherGate`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use lexforge_train::StopReason;
use serde::{Deserialize, Serialize};

use crate::cross::TeacherReport;
use crate::evaluate::EvalReport;
use crate::probe::ProbeReport;

/// What [`train`](crate::train) and [`resume`](crate::resume) did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The matcher directory (the run).
    pub run_dir: PathBuf,
    /// Why training stopped.
    pub stop: StopReason,
    /// Optimizer steps run.
    pub steps: u64,
    /// Pairs per split.
    pub pairs: BTreeMap<String, usize>,
    /// Books per split.
    pub books: BTreeMap<String, usize>,
    /// The untrained base encoder on the test split (plain cosine; no calibration).
    pub baseline: Option<EvalReport>,
    /// The trained, calibrated matcher on the test split.
    pub test: Option<EvalReport>,
    /// The trained matcher on validation after calibration (its ECE before/after).
    pub validation: Option<EvalReport>,
    /// Why calibration failed, when it did (the matcher is then saved uncalibrated).
    pub calibration_error: Option<String>,
    /// The teacher trained for distillation in this run, if one was.
    pub teacher: Option<TeacherReport>,
    /// Topic recoverable from the trained embeddings: a linear probe fitted on train chunks,
    /// scored on test chunks (lower means less topic shortcut).
    pub topic_probe: Option<ProbeReport>,
    /// The same probe on the untrained base encoder's embeddings.
    pub topic_probe_baseline: Option<ProbeReport>,
    /// With distillation: the teacher against the bi-encoder on validation, and what the
    /// teacher was used for.
    #[serde(default)]
    pub teacher_gate: Option<TeacherGate>,
}

/// Whether the cross-encoder teacher earned its cost: it is used for distillation only when
/// its validation ROC-AUC beats the bi-encoder's as training starts, and kept for reranked
/// search only when it beats the trained bi-encoder's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherGate {
    /// The teacher's validation ROC-AUC.
    pub teacher_validation_roc_auc: Option<f64>,
    /// The bi-encoder's validation ROC-AUC before training.
    pub untrained_validation_roc_auc: Option<f64>,
    /// The trained bi-encoder's validation ROC-AUC.
    pub trained_validation_roc_auc: Option<f64>,
    /// Whether the student was distilled from the teacher.
    pub distilled: bool,
    /// Whether the teacher was kept (in `teacher/`) for reranked search.
    pub rerank: bool,
}

impl TeacherGate {
    /// The gate as training starts: distil only when the teacher's validation ROC-AUC beats
    /// the untrained bi-encoder's.
    pub(crate) fn before_training(teacher: Option<f64>, untrained: Option<f64>) -> Self {
        TeacherGate {
            teacher_validation_roc_auc: teacher,
            untrained_validation_roc_auc: untrained,
            trained_validation_roc_auc: None,
            distilled: better(teacher, untrained),
            rerank: false,
        }
    }

    /// Records the trained bi-encoder's validation ROC-AUC; the teacher is kept for reranking
    /// only when it beats it.
    pub(crate) fn after_training(&mut self, trained: Option<f64>) {
        self.trained_validation_roc_auc = trained;
        self.rerank = better(
            self.teacher_validation_roc_auc,
            self.trained_validation_roc_auc,
        );
    }
}

/// Whether `a` is a strictly higher ROC-AUC than `b` (unknown values are not better).
fn better(a: Option<f64>, b: Option<f64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a > b)
}

impl TrainReport {
    /// The run's metrics for its manifest and its `Completed` event: steps, and per evaluated
    /// split ROC-AUC, accuracy, calibration errors and retrieval; the topic probe's accuracy.
    pub(crate) fn manifest_metrics(&self) -> BTreeMap<String, f64> {
        let mut metrics = BTreeMap::new();
        metrics.insert("steps".to_owned(), self.steps as f64);
        for (name, r) in [
            ("baseline_test", &self.baseline),
            ("test", &self.test),
            ("validation", &self.validation),
        ] {
            if let Some(r) = r {
                if let Some(auc) = r.roc_auc {
                    metrics.insert(format!("{name}.roc_auc"), auc);
                }
                metrics.insert(format!("{name}.accuracy"), r.classification.accuracy);
                metrics.insert(format!("{name}.ece_before"), r.ece_before);
                if let Some(e) = r.ece_after {
                    metrics.insert(format!("{name}.ece_after"), e);
                }
                if let Some(m) = &r.retrieval {
                    metrics.insert(format!("{name}.recall_at_1"), m.recall_at_1);
                    metrics.insert(format!("{name}.mrr"), m.mrr);
                }
            }
        }
        if let (Some(p), Some(b)) = (&self.topic_probe, &self.topic_probe_baseline) {
            metrics.insert("test.topic_probe_accuracy".to_owned(), p.accuracy);
            metrics.insert("baseline_test.topic_probe_accuracy".to_owned(), b.accuracy);
            metrics.insert("test.topic_majority".to_owned(), p.majority);
        }
        metrics
    }
}
